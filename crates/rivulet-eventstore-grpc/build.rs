//! Generates the gRPC server code from `proto/` with protox (no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/shared.proto",
        "proto/status.proto",
        "proto/streams.proto",
        "proto/serverfeatures.proto",
        "proto/gossip.proto",
        "proto/persistent.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(std::env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .compile_fds(descriptors)?;
    Ok(())
}
