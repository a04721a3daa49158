//! One DescribePackages per region per window, shared by every settled object in that region.
//! Objects with work under way read their package directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, Package, PackageBackend, PackageFilter};

pub struct RegionSnapshots {
    max_age: Duration,
    regions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Snapshot>>>>>,
}

struct Snapshot {
    taken: Instant,
    packages: Arc<Vec<Package>>,
}

impl RegionSnapshots {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            regions: Mutex::new(HashMap::new()),
        }
    }

    /// Every package of the region, fetched at most once per `max_age`; concurrent callers
    /// wait for the one fetch in flight.
    pub async fn get<B: PackageBackend>(
        &self,
        backend: &B,
        region: &str,
    ) -> Result<Arc<Vec<Package>>, BackendError> {
        let slot = self
            .regions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(region.to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(snapshot) = guard.as_ref()
            && snapshot.taken.elapsed() < self.max_age
        {
            return Ok(snapshot.packages.clone());
        }
        let packages = Arc::new(
            backend
                .describe_packages(region, PackageFilter::All)
                .await?,
        );
        *guard = Some(Snapshot {
            taken: Instant::now(),
            packages: packages.clone(),
        });
        Ok(packages)
    }
}
