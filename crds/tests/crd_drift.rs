//! The committed CRD YAML (in `crds/` and in the Helm chart) must be what `crdgen` writes from
//! the Rust types.

#[test]
fn committed_crds_match_rust_types() {
    let mut stale = Vec::new();
    for dir in bgpvpn_crds::crd_dirs() {
        for (file, yaml) in bgpvpn_crds::crd_files() {
            let path = dir.join(&file);
            if std::fs::read_to_string(&path).unwrap_or_default() != yaml {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "CRD YAML out of date: {stale:?}; run `cargo run -p bgpvpn-crds --bin crdgen` and commit"
    );
}
