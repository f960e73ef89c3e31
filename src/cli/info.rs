pub fn run(_: &InfoArgs, _: &super::GpuArgs) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args)]
pub struct InfoArgs {
    model: std::path::PathBuf,
}
