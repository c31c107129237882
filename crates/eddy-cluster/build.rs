fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from crates.io, so a machine needs no protobuf compiler installed.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_protos(&["proto/cluster.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/cluster.proto");
    Ok(())
}
