//! Per-operation call counts and the ordered log of calls and association transitions, which
//! tests read through `/_sim/calls` and `/_sim/log`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Oldest entries are dropped past this many, so a long benchmark cannot exhaust memory;
/// `seq` keeps counting, so a reader can tell entries were dropped.
const LOG_CAPACITY: usize = 200_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// One request that reached an operation of the package API or S3, whatever its outcome.
    #[default]
    Call,
    /// An association entering a state: ASSOCIATING, ACTIVE, ASSOCIATION_FAILED,
    /// DISSOCIATING, or DISSOCIATED (gone).
    Association,
    /// One request to the simulator's STS (`AssumeRole`, `GetCallerIdentity`), whatever its
    /// outcome. A kind of its own so that readers counting package calls never see them.
    Sts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub seq: u64,
    /// Simulated milliseconds since the simulator started, when this happened.
    pub at_ms: u64,
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub account: String,
    pub region: String,
    /// The access key id of the SigV4 credential that signed a call (calls that passed
    /// authentication only), so tests can tell two clients apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The package the call is about; for a DescribePackages by ID, the IDs it names
    /// (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// The bucket of an S3 call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The key of an S3 call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// HTTP status of a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// State an association entered (association entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_status: Option<String>,
    /// The fault injected into a call, named as in the fault configuration (`throttle`,
    /// `accessDenied`, `errorAfterEffect`, `closeAfterEffect`, `holdAfterEffect`,
    /// `rateLimit`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The call took effect (the operation succeeded), whatever the caller then heard: also
    /// true under an after-effect fault.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub effect: bool,
    /// UpdatePackage's `CommitMessage`, so tests can tell which spec each version came from
    /// (including imports that later fail and leave no version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    /// DescribePackages only: whether the call named packages (filters on the package ID or
    /// name) rather than listing the region.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lookup: bool,
    /// The caller's identity when it is not a plain access key: the assumed-role ARN
    /// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) of a call signed with credentials
    /// the simulator's STS issued; on STS entries also `arn:aws:iam::ACCOUNT:user/sim` for
    /// other keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_arn: Option<String>,
    /// AssumeRole: the `RoleArn` asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// AssumeRole: the `RoleSessionName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,
    /// AssumeRole: whether the request carried an `ExternalId` (its value is not logged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_id_given: bool,
    /// AssumeRole: the session tags of the request, key → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// AssumeRole that succeeded: the access key id of the credentials it issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_access_key_id: Option<String>,
    /// AssumeRole that succeeded: how many seconds the issued credentials are valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Journal {
    next_seq: u64,
    entries: VecDeque<LogEntry>,
    calls: BTreeMap<String, u64>,
}

impl Journal {
    pub fn count_call(&mut self, operation: &str) {
        *self.calls.entry(operation.to_string()).or_default() += 1;
    }

    pub fn push(&mut self, mut entry: LogEntry) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        if self.entries.len() >= LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.clone()
    }

    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        *self = Journal::default();
    }
}
