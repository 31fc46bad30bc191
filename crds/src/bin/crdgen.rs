//! Writes one YAML file per CRD into `crds/` and into the Helm chart's `crds/`.
//!
//!     cargo run -p bgpvpn-crds --bin crdgen
//!
//! The files are committed; `tests/crd_drift.rs` fails when they differ from the Rust types.

fn main() -> std::io::Result<()> {
    for dir in bgpvpn_crds::crd_dirs() {
        for (file, yaml) in bgpvpn_crds::crd_files() {
            let path = dir.join(file);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
