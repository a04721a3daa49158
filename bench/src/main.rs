//! `ospkg-bench`: see the library's documentation, or `ospkg-bench --help`.

use clap::Parser;
use ospkg_bench::Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let report = ospkg_bench::run(&options).await?;
    println!("{}", report.to_markdown());
    if let Some(path) = &options.json {
        eprintln!("ospkg-bench: figures written to {}", path.display());
    }
    Ok(())
}
