//! Generates the signaling protocol types from proto/SignalingProtocol.proto with prost.
//! protox compiles the .proto in pure Rust, so no `protoc` install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/SignalingProtocol.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
