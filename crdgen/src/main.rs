//! `purelb-crdgen`: prints PureLB's CRDs as multi-document YAML; `purelb-crdgen --check FILE` exits 1
//! when FILE is not what the types generate (CI and `cargo test` guard `deploy/crds.yaml` with it).

use std::process::ExitCode;

use purelb_crdgen::{REGENERATE, first_difference, render};

const USAGE: &str = "usage: purelb-crdgen [--check FILE]\n  \
    prints the CRDs of purelb.io/v1 as YAML; with --check, exits 1 when FILE differs from them";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let generated = match render() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("purelb-crdgen: cannot render the CRDs as YAML: {e}");
            return ExitCode::from(2);
        }
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {
            print!("{generated}");
            ExitCode::SUCCESS
        }
        ["--check", file] => check(&generated, file),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Compares `file` with the generated YAML and says where it went stale.
fn check(generated: &str, file: &str) -> ExitCode {
    let committed = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("purelb-crdgen: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    match first_difference(generated, &committed) {
        None => ExitCode::SUCCESS,
        Some((line, want, have)) => {
            eprintln!("purelb-crdgen: {file} is stale (first difference at line {line})");
            eprintln!("  generated: {}", want.as_deref().unwrap_or("<end of file>"));
            eprintln!("  in {file}: {}", have.as_deref().unwrap_or("<end of file>"));
            eprintln!("regenerate it with: {REGENERATE}");
            ExitCode::FAILURE
        }
    }
}
