//! The committed CRD YAML must be what `crdgen` writes from the Rust types.

#[test]
fn committed_crds_match_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (file, yaml) in bgpvpn_crds::crd_files() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        if committed != yaml {
            stale.push(file);
        }
    }
    assert!(stale.is_empty(), "CRD YAML out of date: {stale:?}; run `cargo run -p bgpvpn-crds --bin crdgen` and commit");
}
