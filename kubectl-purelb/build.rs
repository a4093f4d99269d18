//! Embeds every `deploy/*.yaml` that exists at build time: writes `$OUT_DIR/manifests.rs`, a list of
//! `(file name, include_str!(...))`, so `kubectl purelb install` works offline and a manifest added to
//! deploy/ is embedded by the next build without touching the plugin. (A unit test checks the list
//! against deploy/ too, in case the build script did not rerun.)

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let deploy = manifest_dir.join("..").join("deploy");
    println!("cargo::rerun-if-changed={}", deploy.display());
    let mut names: Vec<String> = std::fs::read_dir(&deploy)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("/// Every `deploy/*.yaml` at build time: (file name, contents).\n");
    out.push_str("pub const EMBEDDED: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = deploy.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string());
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("manifests.rs"), out) {
        println!("cargo::error=writing manifests.rs: {e}");
    }
}
