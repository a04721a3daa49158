//! Command line and environment configuration.
//!
//! Every `run` flag has an `OSPKG_*` environment variable so the Helm chart can configure
//! the operator without rewriting its arguments; a flag given on the command line wins.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Kubernetes operator that manages Amazon OpenSearch Service custom packages.
#[derive(Debug, Parser)]
#[command(name = "opensearch-package-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller. A flag given twice takes its last value (a list flag collects
    /// both), so `extraArgs` (or a kustomize patch that appends an argument) can override one
    /// the chart sets.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (every one, or the one named).
    Crd {
        /// Plural name of one CRD: opensearchpackages or opensearchpackageroles.
        name: Option<String>,
    },
    /// Print the version.
    Version,
}

/// Settings of the running controller.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct RunArgs {
    /// AWS region used when an object names none; when unset the AWS default chain
    /// (AWS_REGION, profile, instance metadata) decides.
    #[arg(long, env = "OSPKG_REGION")]
    pub region: Option<String>,

    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(long, env = "OSPKG_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Only reconcile OpenSearchPackage objects matching this label selector.
    #[arg(long, env = "OSPKG_LABEL_SELECTOR")]
    pub label_selector: Option<String>,

    /// How often an unchanged object is checked against AWS (e.g. "10m", "90s").
    #[arg(
        long,
        env = "OSPKG_RESYNC_INTERVAL",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub resync_interval: Duration,

    /// Number of objects reconciled at the same time (across all watched namespaces, first
    /// come first served), and as many again for objects whose package just changed in AWS.
    /// A reconcile waiting for its region's AWS rate limiter holds its slot.
    #[arg(
        long,
        env = "OSPKG_CONCURRENCY",
        default_value_t = crate::controller::DEFAULT_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "OSPKG_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log filter directive (e.g. "info" or "ospkg=debug,kube=info"); RUST_LOG overrides it.
    #[arg(long, env = "OSPKG_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, env = "OSPKG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Maximum OpenSearch Service API calls per second, per account and region (also the
    /// burst).
    #[arg(long, env = "OSPKG_AWS_RATE_LIMIT", default_value_t = crate::controller::DEFAULT_AWS_RATE)]
    pub aws_rate_limit: NonZeroU32,

    /// Longest single AWS request attempt (e.g. "20s"); a call without an answer by then
    /// fails and is re-decided from what AWS shows.
    #[arg(
        long,
        env = "OSPKG_AWS_ATTEMPT_TIMEOUT",
        default_value = "20s",
        value_parser = parse_duration
    )]
    pub aws_attempt_timeout: Duration,

    /// Take part in leader election on a Lease: only the holder reconciles, so several
    /// replicas can run for availability ("false" to run alone without a Lease).
    #[arg(
        long,
        env = "OSPKG_LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub leader_election: bool,

    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "OSPKG_LEADER_ELECTION_LEASE_NAME",
        default_value = "opensearch-package-operator"
    )]
    pub leader_election_lease_name: String,

    /// Namespace of the leader election Lease; default the pod's own (POD_NAMESPACE or the
    /// service account's namespace file).
    #[arg(long, env = "OSPKG_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// How long the Lease is valid after its last renewal: a standby takes over after this
    /// long when the leader stops renewing.
    #[arg(
        long,
        env = "OSPKG_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub leader_election_lease_duration: Duration,

    /// The leader stops reconciling when it has not renewed the Lease for this long.
    #[arg(
        long,
        env = "OSPKG_LEADER_ELECTION_RENEW_DEADLINE",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub leader_election_renew_deadline: Duration,

    /// How often the leader renews the Lease and a standby tries for it.
    #[arg(
        long,
        env = "OSPKG_LEADER_ELECTION_RETRY_PERIOD",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub leader_election_retry_period: Duration,

    /// After SIGTERM, how long reconciles already running may take to finish before the
    /// process releases the Lease and exits (keep it below the pod's
    /// terminationGracePeriodSeconds).
    #[arg(
        long,
        env = "OSPKG_SHUTDOWN_GRACE_PERIOD",
        default_value = "20s",
        value_parser = parse_duration
    )]
    pub shutdown_grace_period: Duration,

    /// Whether objects that do not set spec.source.followContent follow their S3 object's
    /// content (re-import when its ETag or VersionId changes).
    #[arg(
        long,
        env = "OSPKG_FOLLOW_CONTENT",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub follow_content: bool,

    /// How often a followed S3 object is read with HeadObject (e.g. "5m"); each object at its
    /// own moment in the interval, never more often.
    #[arg(
        long,
        env = "OSPKG_SOURCE_CHECK_INTERVAL",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub source_check_interval: Duration,

    /// Longest AWS operation, the SDK's retries of a read included (e.g. "60s"). A change
    /// that got no answer is decided not to have happened only this long (+ 5 s) after it was
    /// sent.
    #[arg(
        long,
        env = "OSPKG_AWS_OPERATION_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub aws_operation_timeout: Duration,

    /// What the objects of a namespace that no OpenSearchPackageRole selects get:
    /// "own-identity" (the operator's own AWS identity, unrestricted) or "deny" (Stalled,
    /// reason NoRole, no AWS call: for clusters shared by several teams).
    #[arg(
        long,
        env = "OSPKG_UNBOUND_NAMESPACES",
        value_enum,
        default_value_t = crate::tenancy::UnboundNamespaces::OwnIdentity
    )]
    pub unbound_namespaces: crate::tenancy::UnboundNamespaces,

    /// How often each OpenSearchPackageRole is assumed again to check it (e.g. "5m").
    #[arg(
        long,
        env = "OSPKG_ROLE_CHECK_INTERVAL",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub role_check_interval: Duration,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Parses durations such as "10m" or "1h 30m"; zero is refused because a zero resync
/// would requeue every object in a busy loop.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn a_flag_given_twice_takes_the_last_value() {
        let args = run_args(&[
            "--concurrency=4",
            "--resync-interval=10m",
            "--namespaces=a,b",
            "--concurrency=64",
            "--resync-interval",
            "1m",
            "--namespaces=c",
        ])
        .expect("parses");
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.resync_interval, std::time::Duration::from_secs(60));
        // A list collects every occurrence.
        assert_eq!(args.namespaces, ["a", "b", "c"]);
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["opensearch-package-operator", "run"]
                .iter()
                .chain(args)
                .copied(),
        )?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("expected run, got {other:?}"),
        }
    }

    /// Parses `run` with `env` standing in for the process environment: every argument's
    /// variable is unbound and a listed variable's value becomes the argument's default,
    /// which is how clap treats an environment value. Tests so never read (or race on) the
    /// real environment.
    fn run_args_with_env(
        args: &[&str],
        env: &[(&str, &'static str)],
    ) -> Result<RunArgs, clap::Error> {
        let command = Cli::command().mut_subcommand("run", |run| {
            run.mut_args(|arg| {
                let value = env
                    .iter()
                    .find(|(name, _)| arg.get_env().and_then(|e| e.to_str()) == Some(*name))
                    .map(|(_, value)| *value);
                let arg = arg.env(None::<&'static str>);
                match value {
                    Some(value) => arg.default_value(value),
                    None => arg,
                }
            })
        });
        let matches = command.try_get_matches_from(
            ["opensearch-package-operator", "run"]
                .iter()
                .chain(args)
                .copied(),
        )?;
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let args = run_args_with_env(&[], &[]).expect("no flags parse");
        assert_eq!(
            args,
            RunArgs {
                region: None,
                namespaces: vec![],
                label_selector: None,
                resync_interval: Duration::from_secs(600),
                concurrency: 32,
                metrics_addr: "0.0.0.0:8080".parse().expect("valid address"),
                log_level: "info".to_owned(),
                log_format: LogFormat::Text,
                aws_rate_limit: NonZeroU32::new(10).expect("non-zero"),
                aws_attempt_timeout: Duration::from_secs(20),
                aws_operation_timeout: Duration::from_secs(60),
                leader_election: true,
                leader_election_lease_name: "opensearch-package-operator".to_owned(),
                leader_election_namespace: None,
                leader_election_lease_duration: Duration::from_secs(15),
                leader_election_renew_deadline: Duration::from_secs(10),
                leader_election_retry_period: Duration::from_secs(2),
                shutdown_grace_period: Duration::from_secs(20),
                follow_content: false,
                source_check_interval: Duration::from_secs(300),
                unbound_namespaces: crate::tenancy::UnboundNamespaces::OwnIdentity,
                role_check_interval: Duration::from_secs(300),
            }
        );
    }

    #[test]
    fn flags_are_parsed() {
        let args = run_args(&[
            "--region",
            "eu-west-1",
            "--namespaces",
            "search,logs",
            "--label-selector",
            "team=search",
            "--resync-interval",
            "1h 30m",
            "--concurrency",
            "16",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--log-level",
            "ospkg=debug",
            "--log-format",
            "json",
            "--aws-rate-limit",
            "3",
        ])
        .expect("valid flags parse");
        assert_eq!(args.region.as_deref(), Some("eu-west-1"));
        assert_eq!(args.namespaces, ["search", "logs"]);
        assert_eq!(args.label_selector.as_deref(), Some("team=search"));
        assert_eq!(args.resync_interval, Duration::from_secs(5400));
        assert_eq!(args.concurrency, 16);
        assert_eq!(args.metrics_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(args.log_level, "ospkg=debug");
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.aws_rate_limit.get(), 3);
    }

    #[test]
    fn every_flag_reads_its_environment_variable() {
        let vars = [
            ("OSPKG_REGION", "us-east-2"),
            ("OSPKG_NAMESPACES", "a,b"),
            ("OSPKG_LABEL_SELECTOR", "x=y"),
            ("OSPKG_RESYNC_INTERVAL", "30s"),
            ("OSPKG_CONCURRENCY", "2"),
            ("OSPKG_METRICS_ADDR", "127.0.0.1:8081"),
            ("OSPKG_LOG_LEVEL", "debug"),
            ("OSPKG_LOG_FORMAT", "json"),
            ("OSPKG_AWS_RATE_LIMIT", "7"),
            ("OSPKG_FOLLOW_CONTENT", "true"),
            ("OSPKG_SOURCE_CHECK_INTERVAL", "90s"),
        ];
        // Each argument must be bound to the variable the chart sets.
        let command = Cli::command();
        let run = command
            .find_subcommand("run")
            .expect("run subcommand exists");
        let bound: Vec<_> = run
            .get_arguments()
            .filter_map(|a| a.get_env().and_then(|e| e.to_str()))
            .collect();
        for (name, _) in vars {
            assert!(bound.contains(&name), "{name} not bound in {bound:?}");
        }

        let args = run_args_with_env(&[], &vars).expect("environment values parse");
        assert_eq!(args.region.as_deref(), Some("us-east-2"));
        assert_eq!(args.namespaces, ["a", "b"]);
        assert_eq!(args.label_selector.as_deref(), Some("x=y"));
        assert_eq!(args.resync_interval, Duration::from_secs(30));
        assert_eq!(args.concurrency, 2);
        assert_eq!(args.metrics_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(args.log_level, "debug");
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.aws_rate_limit.get(), 7);
        assert!(args.follow_content);
        assert_eq!(args.source_check_interval, Duration::from_secs(90));

        // A flag on the command line wins over the environment.
        let args = run_args_with_env(&["--concurrency", "9"], &vars).expect("flags parse");
        assert_eq!(args.concurrency, 9);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--concurrency", "many"),
            ("--resync-interval", "soon"),
            ("--resync-interval", "0s"),
            ("--metrics-addr", "localhost"),
            ("--log-format", "xml"),
            ("--aws-rate-limit", "0"),
            ("--follow-content", "sometimes"),
            ("--source-check-interval", "0s"),
        ] {
            let error = run_args(&[flag, value]).expect_err("bad value is rejected");
            let message = error.to_string();
            assert!(message.contains(flag), "{flag} {value}: {message}");
        }
    }
}
