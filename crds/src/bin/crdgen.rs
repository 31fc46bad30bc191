//! Writes one YAML file per CRD into a directory (default: this crate's directory, `crds/`).
//!
//!     cargo run -p bgpvpn-crds --bin crdgen [DIR]
//!
//! The files are committed; `tests/crd_drift.rs` fails when they differ from the Rust types.

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").to_string());
    for (file, yaml) in bgpvpn_crds::crd_files() {
        let path = std::path::Path::new(&dir).join(file);
        std::fs::write(&path, yaml)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
