//! The API server's own count of the requests it served (`apiserver_request_total` on its
//! `/metrics`), to tell how many Kubernetes writes each object cost.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kube::Client;

/// The verbs that write.
const WRITES: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];
/// The resources the operator and the benchmark write for an object.
const RESOURCES: [&str; 2] = ["opensearchpackages", "events"];

/// Write requests served so far, by `"VERB resource[/subresource]"`, for [`RESOURCES`].
pub async fn writes(client: &Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .context("a /metrics request")?;
    let text = client
        .request_text(request)
        .await
        .context("reading the API server's /metrics")?;
    Ok(parse_writes(&text))
}

fn parse_writes(text: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| {
                let (key, quoted) = pair.split_once('=')?;
                (key == name).then(|| quoted.trim_matches('"'))
            })
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        if !WRITES.contains(&verb) || !RESOURCES.contains(&resource) {
            continue;
        }
        let key = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        };
        *counts.entry(key).or_insert(0.0) += value;
    }
    counts
}

/// `after - before` per key, divided by `per`; keys that did not grow are left out.
pub fn per_object(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    per: usize,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(key, count)| {
            let grown = count - before.get(key).copied().unwrap_or(0.0);
            (grown > 0.0).then(|| (key.clone(), grown / per.max(1) as f64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_writes_to_packages_and_events_by_verb_and_subresource() {
        let text = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ospkg.dev",resource="opensearchpackages",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 3164
apiserver_request_total{code="409",component="apiserver",dry_run="",group="ospkg.dev",resource="opensearchpackages",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 2000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ospkg.dev",resource="opensearchpackages",scope="resource",subresource="",verb="PATCH",version="v1alpha1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ospkg.dev",resource="opensearchpackages",scope="resource",subresource="",verb="WATCH",version="v1alpha1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 21
"#;
        let counts = parse_writes(text);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("APPLY opensearchpackages/status".to_owned(), 3166.0),
                ("PATCH opensearchpackages".to_owned(), 1000.0),
                ("POST events".to_owned(), 2000.0),
            ])
        );
        let before = BTreeMap::from([("POST events".to_owned(), 1000.0)]);
        assert_eq!(
            per_object(&before, &counts, 1000),
            BTreeMap::from([
                ("APPLY opensearchpackages/status".to_owned(), 3.166),
                ("PATCH opensearchpackages".to_owned(), 1.0),
                ("POST events".to_owned(), 1.0),
            ])
        );
    }
}
