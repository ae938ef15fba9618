//! Compiles `proto/pushgate/v1/pushgate.proto` with protox (pure Rust, no `protoc`)
//! and generates the tonic client and server. The encoded descriptor set is written
//! next to the code for server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["pushgate/v1/pushgate.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("pushgate_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
