use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use redis_cache_operator::backends::elasticache::aws::{fleet::PollIntervals, AwsSettings};
use redis_cache_operator::backends::registry::{ClientSettings, Registry};
use redis_cache_operator::cli::{Cli, Command, LogFormat, PlanArgs, PlanOutput, RunArgs};
use redis_cache_operator::controller::{self, LeaderElection, RunConfig};
use redis_cache_operator::metrics::Metrics;
use redis_cache_operator::reconcile::Polling;
use redis_cache_operator::{api, install_crypto_provider, plan};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    install_crypto_provider();
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Crd => match api::crd_yaml() {
            Ok(yaml) => emit(&yaml),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Plan(args) => run_plan(&args),
        Command::Rbac => {
            match serde_json::to_string_pretty(&redis_cache_operator::rbac::policy_rules()) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    // Never lets the SDK log request bodies (they can carry the AUTH token).
    let level = redis_cache_operator::cli::log_directives(level);
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|e| {
        eprintln!("warning: log level {level:?} is not valid ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Stable fields (README "Logs"): timestamp, level, target, message
        // and the event's own fields (cache, reason, …) at the top level.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // Colour only for a person at a terminal, never in log files.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn run_plan(args: &PlanArgs) -> ExitCode {
    let mut docs = plan::Documents::default();
    for file in &args.files {
        let (name, text) = if file.as_os_str() == "-" {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                eprintln!("error: reading standard input: {e}");
                return ExitCode::FAILURE;
            }
            ("<stdin>".to_string(), s)
        } else {
            match std::fs::read_to_string(file) {
                Ok(s) => (file.display().to_string(), s),
                Err(e) => {
                    eprintln!("error: reading {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            }
        };
        if let Err(e) = docs.read(&name, &text) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // On standard error, so `-o json` output stays one JSON document.
    for (name, skipped) in &docs.skipped {
        eprintln!("{}", skipped.note(name));
    }
    let plans = match docs.plan(&args.cluster_name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match args.output {
        PlanOutput::Text => plan::render_text(&plans),
        PlanOutput::Json => match serde_json::to_string_pretty(&plans) {
            Ok(s) => format!("{s}\n"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let written = emit(&text);
    if plans.iter().any(|p| !p.errors.is_empty()) {
        ExitCode::FAILURE
    } else {
        written
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("redis-cache-operator-{}", std::process::id()));
    let config = RunConfig {
        cluster_name: args.cluster_name.clone(),
        watch_namespaces: args
            .watch_namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        concurrency: args.concurrency,
        polling: Polling {
            in_transition: args.poll_interval_transition,
            settled: args.poll_interval_settled,
            ..Polling::default()
        },
        leader_election: args.leader_election.then(|| LeaderElection {
            lease_name: args.lease_name.clone(),
            lease_namespace: args.lease_namespace.clone(),
            identity: identity.clone(),
            lease_duration: std::time::Duration::from_secs(15),
            renew_every: std::time::Duration::from_secs(5),
        }),
        http_addr: Some(args.http_addr),
        instance: identity,
        health: args.health.config(),
        shutdown_timeout: args.shutdown_timeout,
    };
    let mut metrics = Metrics::new();
    let settings = ClientSettings {
        aws: AwsSettings {
            rate_limit: args.aws.aws_rate_limit,
            burst: args.aws.aws_burst,
            // Half the workers may make changes; the rest serve caches that
            // need none (a group became available, a first status).
            turns: usize::from(args.concurrency / 2).max(1),
            poll: PollIntervals {
                in_transition: args.poll_interval_transition,
                settled: args.poll_interval_settled,
            },
            tag_refresh: args.aws.aws_companion_refresh,
            companion_refresh: args.aws.aws_companion_refresh,
            parameter_recheck: args.aws.aws_parameter_recheck,
        },
        aws_endpoint_url: args.aws.aws_endpoint_url.clone(),
        operator_namespace: args.lease_namespace.clone(),
    };
    // Clients are built per class, when a class of that provider exists.
    let backends = Arc::new(Registry::production(
        settings,
        metrics.registry_mut(),
        client.clone(),
    ));
    let metrics = Arc::new(metrics);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    controller::run(client, config, backends, metrics, shutdown).await
}

/// Cancels `token` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing running reconciles");
    token.cancel();
}
