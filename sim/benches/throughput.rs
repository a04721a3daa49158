//! Requests per second of DescribePackages and UpdatePackage against an in-process simulator
//! on loopback, driven by aws-sdk-opensearch clients from several concurrent tasks; then the
//! cost of a region-wide listing (DescribePackages, 100 per page, every page) and of a
//! lookup by `PackageID` in regions of 1,000 and 5,000 packages, which must not grow with
//! the page number. `cargo bench -p ospkg-sim` (about 40 s). Prints the median of several
//! runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_opensearch::Client;
use aws_sdk_opensearch::config::retry::RetryConfig;
use aws_sdk_opensearch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_opensearch::types::{PackageSource, PackageType};
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use ospkg_sim::{Durations, SimConfig};

const TASKS: usize = 16;
const RUNS: usize = 5;
const RUN_TIME: Duration = Duration::from_secs(2);
/// Region sizes of the listing measurement.
const REGION_SIZES: [usize; 2] = [1_000, 5_000];
/// The largest page DescribePackages answers.
const PAGE: i32 = 100;

#[derive(Clone, Copy)]
enum Workload {
    Describe,
    Update,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let sim = ospkg_sim::start(SimConfig::default().durations(Durations::instant())).await?;
    let admin = sim.admin();
    admin
        .put_object("bench", "dict.txt", b"a, b\n".to_vec())
        .await?;
    let client = sdk_client(sim.endpoint());
    let source = PackageSource::builder()
        .s3_bucket_name("bench")
        .s3_key("dict.txt")
        .build();
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let created = client
            .create_package()
            .package_name(format!("bench-{i}"))
            .package_type(PackageType::TxtDictionary)
            .package_source(source.clone())
            .send()
            .await?;
        ids.push(
            created
                .package_details
                .and_then(|d| d.package_id)
                .ok_or_else(|| anyhow::anyhow!("CreatePackage returned no id"))?,
        );
    }
    println!(
        "ospkg-sim throughput: {TASKS} concurrent aws-sdk-opensearch tasks, {RUNS} runs of {:?} each, 2 runtime threads",
        RUN_TIME
    );
    for (name, workload) in [
        ("DescribePackages", Workload::Describe),
        ("UpdatePackage", Workload::Update),
    ] {
        // One unmeasured run to warm connections up.
        run(&client, &ids, &source, workload, Duration::from_millis(300)).await?;
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            rates.push(run(&client, &ids, &source, workload, RUN_TIME).await?);
        }
        rates.sort_by(f64::total_cmp);
        let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{name:<17} median {:>7.0} req/s   (runs: {})",
            rates[RUNS / 2],
            shown.join(", ")
        );
    }
    for size in REGION_SIZES {
        listing(size).await?;
    }
    Ok(())
}

fn sdk_client(endpoint: String) -> Client {
    // The workspace builds the SDK without a default HTTP client: the operator's (rustls on ring).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let conf = aws_sdk_opensearch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "secret", None, None, "sim"))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// A region of `size` packages: the time of one whole listing (every page of 100) and of
/// one lookup by `PackageID`, medians of several runs.
async fn listing(size: usize) -> anyhow::Result<()> {
    let sim = ospkg_sim::start(
        SimConfig::default()
            .durations(Durations::instant())
            .package_quota(size),
    )
    .await?;
    sim.admin()
        .put_object("bench", "dict.txt", b"a, b\n".to_vec())
        .await?;
    let client = sdk_client(sim.endpoint());
    let source = PackageSource::builder()
        .s3_bucket_name("bench")
        .s3_key("dict.txt")
        .build();
    let mut creators = Vec::new();
    for task in 0..TASKS {
        let client = client.clone();
        let source = source.clone();
        creators.push(tokio::spawn(async move {
            let mut last = None;
            for i in (task..size).step_by(TASKS) {
                let created = client
                    .create_package()
                    .package_name(format!("bench-{i:05}"))
                    .package_type(PackageType::TxtDictionary)
                    .package_source(source.clone())
                    .send()
                    .await?;
                last = created.package_details.and_then(|d| d.package_id);
            }
            anyhow::Ok(last)
        }));
    }
    let mut last_id = None;
    for creator in creators {
        last_id = creator.await??.or(last_id);
    }
    let last_id = last_id.ok_or_else(|| anyhow::anyhow!("no package created"))?;

    let mut listings = Vec::new();
    let mut pages = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let (mut token, mut seen) = (None, 0);
        pages = 0;
        loop {
            let page = client
                .describe_packages()
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await?;
            pages += 1;
            seen += page.package_details_list().len();
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        listings.push(started.elapsed());
        anyhow::ensure!(seen >= size, "listed {seen} of {size} packages");
    }
    let mut lookups = Vec::new();
    for _ in 0..RUNS * 20 {
        let started = Instant::now();
        client
            .describe_packages()
            .filters(
                aws_sdk_opensearch::types::DescribePackagesFilter::builder()
                    .name(aws_sdk_opensearch::types::DescribePackagesFilterName::PackageId)
                    .value(&last_id)
                    .build(),
            )
            .send()
            .await?;
        lookups.push(started.elapsed());
    }
    let listing = median(&mut listings);
    println!(
        "region of {size:>5} packages: whole listing ({pages} pages of {PAGE}) median {:>6.1} ms = {:.2} ms/page; lookup by PackageID median {:.2} ms",
        listing.as_secs_f64() * 1000.0,
        listing.as_secs_f64() * 1000.0 / f64::from(pages),
        median(&mut lookups).as_secs_f64() * 1000.0,
    );
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Requests per second completed by all tasks together during `length`.
async fn run(
    client: &Client,
    ids: &[String],
    source: &PackageSource,
    workload: Workload,
    length: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for id in ids {
        let id = id.clone();
        let client = client.clone();
        let source = source.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match workload {
                    Workload::Describe => {
                        client.describe_packages().send().await?;
                    }
                    Workload::Update => {
                        client
                            .update_package()
                            .package_id(&id)
                            .package_source(source.clone())
                            .commit_message("bench")
                            .send()
                            .await?;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
