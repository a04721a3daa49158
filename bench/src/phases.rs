//! The benchmark's phases: create, steady state, changes, restart (see the crate docs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::apiserver;
use crate::operator::{Launch, Operator};
use crate::report::{Changes, Create, MinMeanMax, Restart, Stats, Steady};
use crate::simulator::{Simulator, by_operation, rate_limited};
use crate::tracker::Tracker;
use crate::{BUCKET, NAMESPACE, Options, REGIONS, epoch_ms, progress};

/// AWS-owned packages every region lists besides its own.
const AWS_PACKAGES_PER_REGION: usize = 2;
/// The largest page DescribePackages answers.
const PAGE_SIZE: usize = 100;
/// How often progress is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Uploads and edits in flight at once.
const PARALLEL: usize = 32;

/// One benchmark object.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub region: &'static str,
    pub key: String,
}

impl Object {
    fn manifest(&self) -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "ospkg.dev/v1alpha1",
            "kind": "OpenSearchPackage",
            "metadata": { "name": self.name, "namespace": NAMESPACE },
            "spec": {
                "packageType": "TXT-DICTIONARY",
                "region": self.region,
                "source": { "s3BucketName": BUCKET, "s3Key": self.key },
                "description": "ospkg-bench dictionary",
            },
        }))?)
    }

    /// The key its source moves to in the change phase.
    fn changed_key(&self) -> String {
        format!("dicts/{}-v2.txt", self.name)
    }
}

/// The objects: `bench-00000`, … round robin over the first `--regions` regions.
pub fn objects(options: &Options) -> Vec<Object> {
    (0..options.objects)
        .map(|i| {
            let name = format!("bench-{i:05}");
            Object {
                key: format!("dicts/{name}.txt"),
                region: REGIONS[i % options.regions],
                name,
            }
        })
        .collect()
}

/// Stores every object's source in the simulator's S3.
pub async fn upload_sources(sim: &Simulator, objects: &[Object]) -> Result<()> {
    progress(&format!("uploading {} dictionaries", objects.len()));
    let admin = sim.admin();
    stream::iter(objects)
        .map(|o| {
            let admin = admin.clone();
            async move {
                admin
                    .put_object(BUCKET, &o.key, format!("{0}, {0}-synonym\n", o.name))
                    .await
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn objects_per_region(objects: &[Object]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for o in objects {
        *counts.entry(o.region).or_insert(0) += 1;
    }
    counts
}

/// Waits until every (name, generation) is Ready; the instant that was seen.
async fn wait_ready(
    what: &str,
    tracker: &Tracker,
    wanted: &[(String, i64)],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<SystemTime> {
    let started = Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        let ready = tracker.count_ready(wanted.iter().map(|(n, g)| (n.as_str(), *g)));
        if ready == wanted.len() {
            return Ok(SystemTime::now());
        }
        alive()?;
        if started.elapsed() > timeout {
            bail!(
                "{what}: only {ready} of {} Ready after {timeout:?}",
                wanted.len()
            );
        }
        if Instant::now() >= next_progress {
            progress(&format!(
                "{what}: {ready}/{} Ready after {:.0} s",
                wanted.len(),
                started.elapsed().as_secs_f64()
            ));
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

fn ms(from: SystemTime, to: SystemTime) -> f64 {
    since(from, to).as_secs_f64() * 1000.0
}

/// Phase 1: creates every object at once and waits until all are Ready.
pub async fn create(
    options: &Options,
    api: &Api<DynamicObject>,
    tracker: &Tracker,
    sim: &Simulator,
    objects: &[Object],
    operator: &mut Operator,
) -> Result<Create> {
    progress(&format!(
        "creating {} objects over {} regions",
        objects.len(),
        options.regions
    ));
    let manifests: Vec<DynamicObject> = objects
        .iter()
        .map(Object::manifest)
        .collect::<Result<_>>()?;
    let client = api.clone().into_client();
    let writes_before = apiserver::writes(&client).await?;
    let t0 = SystemTime::now();
    let created: Vec<(DynamicObject, SystemTime)> = stream::iter(manifests)
        .map(|m| async move {
            let created = api.create(&PostParams::default(), &m).await?;
            Ok::<_, kube::Error>((created, SystemTime::now()))
        })
        .buffer_unordered(options.create_concurrency.max(1))
        .try_collect()
        .await
        .context("creating the objects")?;
    let creates_done = SystemTime::now();
    let wanted: Vec<(String, i64)> = created
        .iter()
        .map(|(o, _)| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                o.metadata.generation.unwrap_or(1),
            )
        })
        .collect();
    let all_seen = wait_ready("create", tracker, &wanted, options.ready_timeout, || {
        if operator.running() {
            Ok(())
        } else {
            bail!("the operator exited:\n{}", operator.log_tail(30))
        }
    })
    .await?;
    let last_ready = wanted
        .iter()
        .filter_map(|(n, g)| tracker.ready_at(n, *g))
        .max()
        .unwrap_or(all_seen);

    let writes_after = apiserver::writes(&client).await?;
    let log = sim.log().await?;
    let calls: Vec<_> = log.calls_between(t0, all_seen).collect();
    let throttled = calls.iter().filter(|c| rate_limited(c)).count() as u64;
    let by_op = by_operation(calls.iter().copied());
    let total_calls = calls.len() as u64;

    let packages = sim.packages().await?;
    let created_to_create_package: Vec<Duration> = created
        .iter()
        .filter_map(|(o, answered)| {
            let package = packages.get(o.metadata.name.as_deref()?)?;
            let latency = package.created_epoch_ms - epoch_ms(*answered);
            Some(Duration::from_secs_f64(latency.max(0.0) / 1000.0))
        })
        .collect();
    let mut import_end_to_ready = Vec::new();
    for (name, generation) in &wanted {
        let (Some(package), Some(ready)) =
            (packages.get(name), tracker.ready_at(name, *generation))
        else {
            continue;
        };
        if package.status == "AVAILABLE" {
            let latency = epoch_ms(ready) - package.last_updated_epoch_ms;
            import_end_to_ready.push(Duration::from_secs_f64(latency.max(0.0) / 1000.0));
        }
    }

    let rate = f64::from(options.rate);
    let import_ms = (options.copying_ms + options.validating_ms) as f64;
    let busiest = objects_per_region(objects)
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    let lower_bound_ms = busiest as f64 / rate * 1000.0 + import_ms;
    let all_ready_ms = ms(t0, last_ready);
    progress(&format!(
        "all {} Ready after {:.1} s (lower bound {:.1} s)",
        wanted.len(),
        all_ready_ms / 1000.0,
        lower_bound_ms / 1000.0
    ));
    Ok(Create {
        creates_took_ms: ms(t0, creates_done),
        all_ready_ms,
        lower_bound_ms,
        ratio: all_ready_ms / lower_bound_ms,
        calls: by_op,
        total_calls,
        calls_per_object: total_calls as f64 / objects.len() as f64,
        throttled,
        created_to_create_package: Stats::of(&created_to_create_package),
        import_end_to_ready: Stats::of(&import_end_to_ready),
        kube_writes_per_object: apiserver::per_object(&writes_before, &writes_after, objects.len()),
    })
}

/// Phase 2: one resync interval to settle, then counts `--steady-windows` windows.
pub async fn steady(
    options: &Options,
    sim: &Simulator,
    objects: &[Object],
    operator: &Operator,
) -> Result<Steady> {
    let windows = options.steady_windows.max(1);
    let counted = options.resync * windows;
    progress(&format!(
        "steady state: settling for {:?}, then counting {windows} resync window(s) ({counted:?})",
        options.resync
    ));
    tokio::time::sleep(options.resync).await;
    let from = SystemTime::now();
    let cpu_before = operator.cpu_seconds()?;
    tokio::time::sleep(counted).await;
    let cpu_seconds = operator.cpu_seconds()? - cpu_before;
    let to = SystemTime::now();

    let log = sim.log().await?;
    let calls: Vec<_> = log.calls_between(from, to).collect();
    let per_region = objects_per_region(objects);
    let describes: Vec<f64> = per_region
        .keys()
        .map(|region| {
            let n = calls
                .iter()
                .filter(|c| {
                    c.region == *region && c.operation.as_deref() == Some("DescribePackages")
                })
                .count();
            n as f64 / f64::from(windows)
        })
        .collect();
    let busiest = per_region.values().copied().max().unwrap_or(0);
    let window_seconds = since(from, to).as_secs_f64();
    Ok(Steady {
        settle_ms: options.resync.as_millis() as u64,
        windows,
        describe_per_region_per_resync: MinMeanMax::of(&describes),
        pages_per_region_listing: (busiest + AWS_PACKAGES_PER_REGION).div_ceil(PAGE_SIZE) as u64,
        calls: by_operation(calls.iter().copied()),
        cpu_seconds,
        cpu_percent_of_core: cpu_seconds / window_seconds * 100.0,
    })
}

/// Phase 3: edits `spec.source.s3Key` of a sample, one region after the other.
pub async fn changes(
    options: &Options,
    api: &Api<DynamicObject>,
    tracker: &Tracker,
    sim: &Simulator,
    objects: &[Object],
) -> Result<Changes> {
    // The first objects lie in distinct regions (round robin).
    let sample: Vec<&Object> = objects.iter().take(options.changes).collect();
    if sample.is_empty() {
        return Ok(Changes {
            edited: 0,
            change_to_update: Stats::of(&[]),
            change_to_ready: Stats::of(&[]),
            without_update: 0,
            not_ready: 0,
        });
    }
    progress(&format!(
        "changing the source of {} objects, one every {:?}",
        sample.len(),
        options.change_interval
    ));
    let admin = sim.admin();
    for o in &sample {
        admin
            .put_object(
                BUCKET,
                &o.changed_key(),
                format!("{0}, {0}-changed\n", o.name),
            )
            .await?;
    }
    let mut edits = Vec::new();
    for o in &sample {
        let patch = json!({ "spec": { "source": { "s3Key": o.changed_key() } } });
        let at = SystemTime::now();
        let edited = api
            .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("editing {}", o.name))?;
        let generation = edited.metadata.generation.context("no generation")?;
        edits.push((o.name.clone(), generation, at));
        tokio::time::sleep(options.change_interval).await;
    }
    let wanted: Vec<(String, i64)> = edits.iter().map(|(n, g, _)| (n.clone(), *g)).collect();
    let ready = wait_ready(
        "changes",
        tracker,
        &wanted,
        options.ready_timeout,
        || Ok(()),
    )
    .await;
    if let Err(e) = &ready {
        progress(&format!("{e:#}"));
    }

    let log = sim.log().await?;
    let packages = sim.packages().await?;
    let now = SystemTime::now();
    let (mut to_update, mut to_ready, mut without_update) = (Vec::new(), Vec::new(), 0);
    for (name, generation, at) in &edits {
        let update = packages.get(name).and_then(|p| {
            log.calls_between(*at, now).find(|c| {
                c.operation.as_deref() == Some("UpdatePackage")
                    && c.package_id.as_deref() == Some(p.id.as_str())
            })
        });
        match update {
            Some(call) => to_update.push(Duration::from_secs_f64(
                (log.epoch_ms(call) - epoch_ms(*at)).max(0.0) / 1000.0,
            )),
            None => without_update += 1,
        }
        if let Some(ready) = tracker.ready_at(name, *generation) {
            to_ready.push(since(*at, ready));
        }
    }
    Ok(Changes {
        edited: edits.len(),
        change_to_update: Stats::of(&to_update),
        change_to_ready: Stats::of(&to_ready),
        without_update,
        not_ready: edits.len() - to_ready.len(),
    })
}

/// Phase 4: starts the operator again (the caller stopped it) with every object present.
pub async fn restart(
    options: &Options,
    launch: &Launch,
    sim: &Simulator,
) -> Result<(Operator, Restart)> {
    progress("restarting the operator with every object present");
    let from = SystemTime::now();
    let (operator, startup) = launch.start("operator-restarted.log").await?;
    let until = from + options.resync;
    if let Ok(left) = until.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let log = sim.log().await?;
    let calls = by_operation(log.calls_between(from, until));
    Ok((
        operator,
        Restart {
            startup,
            total_calls_first_resync: calls.values().sum(),
            calls_first_resync: calls,
        },
    ))
}
