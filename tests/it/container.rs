//! The container files, checked without a container engine: the Dockerfile's build
//! context is enough for cargo, and the compose file's environment, left at its defaults,
//! starts each service to ready. `scripts/container-check.sh` runs them on a real engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Days;
use price_history::domain::JobStatus;
use uuid::Uuid;

use crate::support::{
    Harness, Service, days_before_today, free_port, spawn_with_exact_env, until_ready,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// The Dockerfile

/// One instruction of a Dockerfile, continuation lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    rest: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    rest: rest.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    instructions
}

/// The instructions of each stage, in order.
fn stages(instructions: Vec<Instruction>) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("a Dockerfile starts with FROM")
            .push(instruction);
    }
    stages
}

/// `.dockerignore`: one pattern per line, matched against the path from the context's
/// root with `*` standing for any run of characters but `/`; a match excludes a
/// directory's whole content.
fn ignored(path: &Path, patterns: &[String]) -> bool {
    fn glob(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.first(), name.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], name)
                    || (!name.is_empty() && name[0] != b'/' && glob(pattern, &name[1..]))
            }
            (Some(p), Some(n)) if p == n => glob(&pattern[1..], &name[1..]),
            _ => false,
        }
    }
    let mut prefix = PathBuf::new();
    path.components().any(|component| {
        prefix.push(component);
        let text = prefix.to_string_lossy();
        patterns
            .iter()
            .any(|pattern| glob(pattern.as_bytes(), text.as_bytes()))
    })
}

fn dockerignore() -> Vec<String> {
    std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            assert!(
                !line.starts_with('!') && !line.contains("**") && !line.contains('?'),
                "this check reads only plain names and `*` in .dockerignore: {line}"
            );
            line.trim_start_matches('/')
                .trim_end_matches('/')
                .to_owned()
        })
        .collect()
}

/// Copies `from` (a file or a directory, relative to the repository) to `to`, leaving out
/// what `.dockerignore` excludes; returns how many files were copied.
fn copy_from_context(from: &Path, to: &Path, patterns: &[String]) -> usize {
    if ignored(from, patterns) {
        return 0;
    }
    let source = repo().join(from);
    if source.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        let mut copied = 0;
        for entry in std::fs::read_dir(&source).unwrap() {
            let name = entry.unwrap().file_name();
            copied += copy_from_context(&from.join(&name), &to.join(&name), patterns);
        }
        copied
    } else if source.is_file() {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&source, to).unwrap();
        1
    } else {
        0
    }
}

/// Applies one `COPY src... dest` of the build stage (WORKDIR is the root of `into`).
fn apply_copy(rest: &str, into: &Path, patterns: &[String]) {
    let words: Vec<&str> = rest.split_whitespace().collect();
    assert!(
        !words
            .iter()
            .any(|w| w.starts_with('[') || w.starts_with("--")),
        "this check reads only plain `COPY src... dest` in the build stage: COPY {rest}"
    );
    let (dest, sources) = words.split_last().expect("COPY has a destination");
    let dest = into.join(dest.trim_start_matches("./").trim_start_matches('/'));
    for source in sources {
        let from = Path::new(source.trim_start_matches("./"));
        // Several sources, or a destination ending in `/`: each goes into it by name;
        // otherwise the source (a directory's content) becomes the destination.
        let to = if sources.len() > 1 || dest.to_string_lossy().ends_with('/') {
            dest.join(from.file_name().unwrap())
        } else {
            dest.clone()
        };
        let copied = copy_from_context(from, &to, patterns);
        assert!(
            copied > 0,
            "COPY {source}: nothing in the build context (missing, or excluded by .dockerignore)"
        );
    }
}

fn cargo() -> std::process::Command {
    std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn host_triple() -> String {
    let output = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host")
}

/// What `cargo build` reads before it compiles anything, checked on `dir`: the manifest
/// parses with every target it names (benches included; `cargo metadata` alone skips a
/// missing bench) and the lock file fits it (`cargo fetch --locked`, which downloads
/// nothing once `cargo test` has built); every source file a target names exists; and
/// every file the code embeds at compile time (`include_str!`, `sqlx::migrate!`) is there.
fn assert_cargo_can_build(dir: &Path, what: &str) {
    let fetch = cargo()
        .args(["fetch", "--locked", "--target", &host_triple()])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        fetch.status.success(),
        "{what}: cargo cannot read the package:\n{}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let metadata = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(metadata.status.success(), "{what}: cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    // Every member of the workspace: cargo reads each one's manifest and targets.
    let packages = metadata["packages"].as_array().unwrap();
    let service = packages
        .iter()
        .find(|package| package["name"] == "price-history")
        .expect("the service's package");
    let targets = service["targets"].as_array().unwrap();
    assert!(targets.len() >= 3, "lib, bin and build script: {targets:?}");
    for target in packages
        .iter()
        .flat_map(|package| package["targets"].as_array().unwrap())
    {
        let path = Path::new(target["src_path"].as_str().unwrap());
        assert!(path.is_file(), "{what}: {} is missing", path.display());
    }
}

/// Every `include_str!`/`include_bytes!`/`sqlx::migrate!` path of `src/`, as a path from
/// the package root.
fn compile_time_inputs(dir: &Path) -> Vec<PathBuf> {
    fn visit(dir: &Path, root: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, root, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (macro_name, relative_to_file) in [
                ("include_str!(\"", true),
                ("include_bytes!(\"", true),
                ("migrate!(\"", false),
            ] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = &text[at + macro_name.len()..];
                    let argument = &rest[..rest.find('"').unwrap()];
                    let base = if relative_to_file {
                        path.parent().unwrap().strip_prefix(root).unwrap()
                    } else {
                        Path::new("")
                    };
                    found.push(base.join(argument));
                }
            }
        }
    }
    let mut found = Vec::new();
    visit(&dir.join("src"), dir, &mut found);
    found
}

/// A directory removed when dropped, pass or fail.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn each_cargo_build_of_the_dockerfile_has_all_that_cargo_toml_names() {
    let patterns = dockerignore();
    let stages = stages(dockerfile());
    let build = &stages[0];
    let scratch =
        Scratch(std::env::temp_dir().join(format!("ph-docker-context-{}", Uuid::now_v7())));
    let scratch = &scratch.0;
    // Stages built `FROM build` (the fake upstream's image) go on in the same files.
    let on_build = stages[1..]
        .iter()
        .filter(|stage| stage[0].rest.starts_with("build "))
        .flatten();
    let mut builds = 0;
    for instruction in build.iter().chain(on_build) {
        match instruction.keyword.as_str() {
            "COPY" => apply_copy(&instruction.rest, scratch, &patterns),
            "RUN" if instruction.rest.contains("cargo build") => {
                builds += 1;
                // The stand-in sources a dependency layer writes before building.
                for word in instruction.rest.split_whitespace() {
                    let word = word.trim_matches(|c| c == '\'' || c == '"' || c == ';');
                    if word.contains("src/") && word.ends_with(".rs") {
                        let stub = scratch.join(word);
                        if !stub.exists() {
                            std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
                            std::fs::write(&stub, "fn main() {}\n").unwrap();
                        }
                    }
                }
                let what = format!("cargo build #{builds} of the Dockerfile");
                assert_cargo_can_build(scratch, &what);
                if builds > 1 {
                    for input in compile_time_inputs(scratch) {
                        assert!(
                            scratch.join(&input).exists(),
                            "{what}: the code embeds {}, which no COPY brings",
                            input.display()
                        );
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        builds, 3,
        "a dependency layer, the project's own build and the fake upstream's: {stages:?}"
    );
    let last = build.last().unwrap();
    assert!(
        last.keyword == "RUN" && last.rest.contains("cargo build"),
        "the last step of the build stage builds the binary from the full sources"
    );
    // The binary shipped carries no symbols or debug info.
    let env: Vec<&Instruction> = build.iter().filter(|i| i.keyword == "ENV").collect();
    assert!(
        env.iter()
            .any(|i| i.rest.contains("CARGO_PROFILE_RELEASE_STRIP=symbols")),
        "{env:?}"
    );
}

#[test]
fn dockerignore_keeps_target_and_git_out_of_the_context() {
    let patterns = dockerignore();
    for path in ["target", "target/debug/price-history", ".git/HEAD"] {
        assert!(ignored(Path::new(path), &patterns), "{path}");
    }
    for path in [
        "src/main.rs",
        "Cargo.toml",
        "migrations",
        "benches/e2e.rs",
        "crates/fake-upstream/Cargo.toml",
    ] {
        assert!(!ignored(Path::new(path), &patterns), "{path}");
    }
}

// ---------------------------------------------------------------------------------------
// The compose file

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join("docker/compose.yaml")).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    value
}

/// Compose's interpolation: `${VAR:-default}` and `${VAR-default}` give the variable
/// from `set` or the default, `${VAR}` and `$VAR` the variable or nothing, `$$` a `$`.
fn interpolate(text: &str, set: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').expect("a closing brace");
            let expression = &after[..end];
            let (name, default) = match expression.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => match expression.split_once('-') {
                    Some((name, default)) => (name, Some(default)),
                    None => (expression, None),
                },
            };
            assert!(
                !name.contains(['?', '+', ':']),
                "this check reads only ${{VAR}} and ${{VAR:-default}}: {expression}"
            );
            let value = set.get(name).cloned();
            let value = match (expression.contains(":-"), value) {
                (true, Some(v)) if v.is_empty() => default.unwrap_or("").to_owned(),
                (_, Some(v)) => v,
                (_, None) => default.unwrap_or("").to_owned(),
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(&set.get(&rest[..end]).cloned().unwrap_or_default());
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The environment a service's container gets: the image's `ENV` lines, then the
/// service's `environment`, interpolated with the variables in `set` (a user's shell).
fn service_env(
    compose: &serde_yaml::Value,
    service: &str,
    set: &BTreeMap<&str, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let runtime = stages(dockerfile()).pop().unwrap();
    for instruction in runtime.iter().filter(|i| i.keyword == "ENV") {
        for pair in instruction.rest.split_whitespace() {
            let (key, value) = pair.split_once('=').expect("ENV key=value");
            env.insert(key.to_owned(), value.to_owned());
        }
    }
    let environment = &compose["services"][service]["environment"];
    let mapping = environment
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has an environment mapping"));
    for (key, value) in mapping {
        let key = key.as_str().unwrap().to_owned();
        let value = match value {
            serde_yaml::Value::String(s) => interpolate(s, set),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            other => panic!("{service}: {key} is {other:?}"),
        };
        env.insert(key, value);
    }
    env
}

/// The container's command: the service's `command`, or the image's `CMD`.
fn service_command(compose: &serde_yaml::Value, service: &str) -> Vec<String> {
    match compose["services"][service]["command"].as_sequence() {
        Some(command) => command
            .iter()
            .map(|word| word.as_str().unwrap().to_owned())
            .collect(),
        None => image_command(),
    }
}

/// The image's `ENTRYPOINT` must be the binary; its `CMD` is the default subcommand.
fn image_command() -> Vec<String> {
    let runtime = stages(dockerfile()).pop().unwrap();
    let exec_form = |keyword: &str| -> Vec<String> {
        let instruction = runtime.iter().rfind(|i| i.keyword == keyword).unwrap();
        serde_json::from_str(&instruction.rest).expect("exec form")
    };
    assert_eq!(exec_form("ENTRYPOINT"), ["price-history"]);
    exec_form("CMD")
}

#[test]
fn compose_runs_postgres_one_api_and_two_worker_replicas_built_from_the_dockerfile() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["postgres", "api", "worker"]);
    let worker = &compose["services"]["worker"];
    assert_eq!(worker["deploy"]["replicas"].as_u64(), Some(2));
    // podman-compose starts one container unless the mode is spelled out.
    assert_eq!(worker["deploy"]["mode"].as_str(), Some("replicated"));
    for service in ["api", "worker"] {
        let build = &compose["services"][service]["build"];
        let context = repo()
            .join("docker")
            .join(build["context"].as_str().unwrap());
        assert!(
            context.join("Cargo.toml").is_file(),
            "{service}: the context is the repo"
        );
        assert!(
            context
                .join(build["dockerfile"].as_str().unwrap())
                .is_file()
        );
        assert_eq!(service_command(&compose, service), [service]);
        let env = service_env(&compose, service, &BTreeMap::new());
        assert!(env.values().all(|v| !v.contains('$')), "{service}: {env:?}");
        assert_eq!(env["DATABASE_CONNECT_TIMEOUT_SECS"], "60");
    }
    // With API_TOKEN unset (the default) every write is open: only this machine reaches it.
    let ports = compose["services"]["api"]["ports"].as_sequence().unwrap();
    assert!(!ports.is_empty());
    for port in ports {
        let port = port.as_str().unwrap();
        assert!(
            port.starts_with("127.0.0.1:"),
            "{port} is published beyond this machine"
        );
    }
}

/// Asks the API at `base` (served by `api`), as a user would, for BTC's last `days` days
/// up to yesterday, and checks that `worker` (which may be `api` itself) completes the job.
async fn run_days(
    h: &Harness,
    client: &reqwest::Client,
    base: &str,
    days: u64,
    api: &Service,
    worker: &Service,
) {
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(days - 1)).unwrap();
    let response = client
        .post(format!("{base}/api/v1/ingestion-jobs"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"symbol":"BTC","start_date":"{start}","end_date":"{end}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{}", api.output());
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let job = h
        .wait_for(id, "the job finishes", |j| j.status.is_terminal())
        .await;
    assert_eq!(job.status, JobStatus::Completed, "{}", worker.output());
}

/// The lines an operator would look into, or that should not be there at all: any ERROR
/// or WARN but the one that says the POSTs are open, and PostgreSQL's notices.
fn alarming_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| {
            line.contains("\"level\":\"ERROR\"")
                || line.contains("already exists")
                || (line.contains("\"level\":\"WARN\"") && !line.contains("API_TOKEN is not set"))
        })
        .collect()
}

/// A container of `service` as compose would start it, here: its command and environment
/// with every variable left at its default, but for the database (the test's own, since
/// the host `postgres` is compose's) and the port, and `overrides` as a user's shell sets
/// them.
fn start_as_compose(
    compose: &serde_yaml::Value,
    service: &str,
    database_url: &str,
    overrides: &BTreeMap<&str, String>,
) -> (Service, String) {
    let mut env = service_env(compose, service, overrides);
    assert!(
        env["DATABASE_URL"].contains("@postgres:5432/"),
        "compose points at its postgres service: {}",
        env["DATABASE_URL"]
    );
    env.insert("DATABASE_URL".to_owned(), database_url.to_owned());
    let bind = format!("127.0.0.1:{}", free_port());
    env.insert("BIND_ADDR".to_owned(), bind.clone());
    let command = service_command(compose, service);
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let env: Vec<(String, String)> = env.into_iter().collect();
    (spawn_with_exact_env(&args, &env), format!("http://{bind}"))
}

#[tokio::test]
async fn the_api_and_a_worker_start_to_ready_with_composes_environment_at_its_defaults() {
    let h = Harness::new().await;
    let compose = compose();

    // Everything at compose's defaults but CoinGecko's address, which the user's shell
    // points at the fake: the worker runs the job, and a call to the real CoinGecko (out of
    // reach here) would log a warning depending on how soon SIGTERM follows.
    let shell = BTreeMap::from([("COINGECKO_BASE_URL", h.fake.base_url())]);
    let (mut api, base) = start_as_compose(&compose, "api", &h.db.url, &shell);
    let (mut worker, _) = start_as_compose(&compose, "worker", &h.db.url, &shell);
    let client = until_ready(&api, &base).await;
    worker
        .wait_for_printed("worker starting", Duration::from_secs(30))
        .await;

    // API_TOKEN is empty in compose when the user set none: the POSTs are open.
    run_days(&h, &client, &base, 10, &api, &worker).await;

    api.signal("TERM");
    worker.signal("TERM");
    assert_eq!(api.exit_code(Duration::from_secs(30)).await, Some(0));
    assert_eq!(worker.exit_code(Duration::from_secs(30)).await, Some(0));
    for (name, service) in [("api", &api), ("worker", &worker)] {
        let output = service.output();
        assert!(
            output.lines().all(|line| line.starts_with('{')),
            "{name} logs JSON, one object a line:\n{output}"
        );
        assert!(
            alarming_lines(&output).is_empty(),
            "{name} logged at WARN or ERROR, or PostgreSQL's notices:\n{output}"
        );
    }
}

#[tokio::test]
async fn serve_as_compose_starts_it_runs_a_job_without_sending_an_empty_api_key() {
    let h = Harness::new().await;
    let compose = compose();
    // The image's default command; the user points it at the fake CoinGecko.
    let shell = BTreeMap::from([
        ("COINGECKO_BASE_URL", h.fake.base_url()),
        ("COINGECKO_CALLS_PER_MINUTE", "6000".to_owned()),
    ]);
    let mut env = service_env(&compose, "api", &shell);
    assert_eq!(
        env["COINGECKO_API_KEY"], "",
        "no key unless the user sets one"
    );
    env.insert("DATABASE_URL".to_owned(), h.db.url.clone());
    let bind = format!("127.0.0.1:{}", free_port());
    env.insert("BIND_ADDR".to_owned(), bind.clone());
    let base = format!("http://{bind}");
    assert_eq!(image_command(), ["serve"]);
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut serve = spawn_with_exact_env(&["serve"], &env);
    let client = until_ready(&serve, &base).await;

    run_days(&h, &client, &base, 30, &serve, &serve).await;

    let calls = h.fake.calls();
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|call| !call.api_key_present),
        "an empty COINGECKO_API_KEY sends no key header: {calls:?}"
    );
    serve.signal("TERM");
    let output = serve.exits_0(Duration::from_secs(30)).await;
    assert!(alarming_lines(&output).is_empty(), "{output}");
}
