//! Generates the signaling protocol types from proto/SignalingProtocol.proto with prost.
//! protox compiles the .proto in pure Rust, so no `protoc` install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/SignalingProtocol.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;

    // `carillon --version` names the commit it was built from ("unknown" outside a git checkout).
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CARILLON_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    Ok(())
}
