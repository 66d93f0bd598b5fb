//! The command line of the real binary: master key rotation, production start-up rules,
//! manifest linting.

use std::process::Command;

use synchub::webhooks::sign;

use crate::durability::{free_port, start};
use crate::helpers::{Backend, OPERATOR_TOKEN, RemoteTenant, TestDatabase, shopify_connection};
use crate::on_both_backends;

fn synchub(database: &TestDatabase) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_synchub"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in database.env() {
        command.env(key, value);
    }
    command
}

/// Runs the command, asserts that it succeeded (with its stderr if not), returns its stdout.
fn succeed(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the command, asserts that it failed (`what` says what it must not have done), and
/// returns its stderr.
fn fails(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{what}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `master-key rotate` re-wraps every data key: after it, the service starts with the new key
/// alone, credentials still decrypt and webhooks still verify.
async fn master_key_rotation_rewraps_every_secret(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let port = free_port();
    let server = start(&database, port).await;
    let remote = RemoteTenant::create(port).await;
    let (base, client, token) = (&remote.base, &remote.client, &remote.token);
    let connection = remote
        .post(
            "/v1/connections",
            shopify_connection("US", "rotate-me-secret"),
        )
        .await;
    let id = connection["id"].as_str().unwrap().to_string();
    drop(server);

    let key_file = database.data_dir.path().join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let new_key = "q2aDjkNwL6Sw8wJXoVh9v1F+Gm2bKc0n3ZyYt4uRk8E=";
    let stdout = succeed(
        synchub(&database)
            .args(["master-key", "rotate"])
            .env("SYNCHUB_NEW_MASTER_KEY", new_key),
    );
    assert!(stdout.contains("re-wrapped 2 secret(s)"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), new_key);
    assert_ne!(old_key.trim(), new_key);

    let _server = start(&database, port).await;
    let fetched: serde_json::Value = client
        .get(format!("{base}/v1/connections/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["credentials"]["access_token"], "****0123",
        "credentials decrypt under the new key"
    );
    let body = b"{\"id\":1}";
    let status = client
        .post(format!("{base}/v1/hooks/{id}"))
        .header(
            "X-Shopify-Hmac-Sha256",
            sign::shopify("rotate-me-secret", body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status.as_u16(),
        200,
        "the webhook secret decrypts under the new key"
    );
}
on_both_backends!(master_key_rotation_rewraps_every_secret);

/// In production, no master key means no start, with a message that names the variable.
#[tokio::test]
async fn production_refuses_to_start_without_a_master_key() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let stderr = fails(
        synchub(&database)
            .args(["serve"])
            .env("SYNCHUB_ENV", "production"),
        "served without a master key",
    );
    assert!(stderr.contains("SYNCHUB_MASTER_KEY"), "{stderr}");
    assert!(
        !database.data_dir.path().join("master.key").exists(),
        "no key is generated in production"
    );
}

/// `connector lint` passes the built-in manifests and names every problem of a bad one.
#[test]
fn connector_lint_reports_field_paths() {
    for file in [
        "shopify",
        "amazon-sp-api",
        "shopee",
        "tiktok-shop",
        "generic-rest-erp",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_synchub"))
            .args([
                "connector",
                "lint",
                &format!("{}/connectors/{file}.toml", env!("CARGO_MANIFEST_DIR")),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"Bad\"\ndisplay_name = \"x\"\nkind = \"erp\"\nversion = \"1\"\ndocs_url = \"x\"\n[webhook]\nscheme = \"tiktok_shop\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["connector", "lint"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in ["name:", "version:", "webhook.app_key_setting:"] {
        assert!(stderr.contains(path), "{path} missing from:\n{stderr}");
    }
}

/// Even at debug level, the log holds no token, credential or webhook secret, and each line
/// of a request carries its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secrets_and_carry_request_ids() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let port = free_port();
    let log_path = database.data_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = crate::durability::start_with(
        &database,
        port,
        &[("RUST_LOG", "debug"), ("SYNCHUB_LOG_JSON", "true")],
        log.into(),
    )
    .await;
    let remote = RemoteTenant::create(port).await;
    let (base, client, token) = (&remote.base, &remote.client, remote.token.clone());
    let mut body = shopify_connection("US", "log-secret-webhook-value");
    body["credentials"]["access_token"] = serde_json::json!("shpat_log_test_credential_value");
    let connection = remote.post("/v1/connections", body).await;
    let id = connection["id"].as_str().unwrap();
    let bad = client
        .post(format!("{base}/v1/hooks/{id}"))
        .header("X-Shopify-Hmac-Sha256", sign::shopify("wrong", b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let _ = client
        .put(format!("{base}/v1/connections/{id}/credentials"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"credentials": {"access_token": "shpat_rotated_credential_value"}}),
        )
        .send()
        .await
        .unwrap();
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 5, "the server logged: {log}");
    for secret in [
        OPERATOR_TOKEN,
        token.as_str(),
        "log-secret-webhook-value",
        "shpat_log_test_credential_value",
        "shpat_rotated_credential_value",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    let served: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "request served")
        .collect();
    assert!(served.len() >= 5, "one access line per request");
    assert!(
        served.iter().all(|line| line["span"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() >= 16)),
        "{served:?}"
    );
}

/// `synchub demo` runs the whole product on its own: the simulator's orders reach the ERP
/// through the flows it creates, none twice, and it cleans up after itself.
#[test]
fn the_demo_moves_every_order_once() {
    let output = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["demo", "--orders", "200", "--seconds", "12"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("demo over:"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    assert!(summary.contains(", 0 written twice"), "{summary}");
    let in_erp: usize = summary
        .trim_start_matches("demo over: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        in_erp >= 400,
        "both stores' seeded orders arrived: {summary}"
    );
}

/// `synchub sim` stops on SIGTERM (systemd, `docker stop` and CI cleanup send it), not only
/// on Ctrl-C.
#[tokio::test]
async fn the_simulator_stops_on_sigterm() {
    let port = free_port();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stats = format!("http://127.0.0.1:{port}/_sim/stats");
    crate::helpers::eventually(
        "the simulator answers",
        std::time::Duration::from_secs(20),
        || {
            let stats = stats.clone();
            async move {
                reqwest::get(&stats)
                    .await
                    .and_then(|r| r.error_for_status())
            }
        },
    )
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exited = crate::helpers::eventually(
        "the simulator exits",
        std::time::Duration::from_secs(10),
        || {
            let status = sim.try_wait();
            async move {
                match status {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    assert!(exited.success(), "{exited}");
}

/// A worker with no address given listens on `worker_listen`, so it does not take the api's
/// port on a shared host.
#[tokio::test]
async fn a_worker_listens_on_its_own_port() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let port = free_port();
    let mut worker = synchub(&database)
        .arg("worker")
        .env("SYNCHUB_WORKER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    crate::helpers::eventually(
        "the worker answers on worker_listen",
        std::time::Duration::from_secs(30),
        || {
            let ready = ready.clone();
            async move {
                reqwest::get(&ready)
                    .await
                    .and_then(|r| r.error_for_status())
            }
        },
    )
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
}

/// Text logs written to a file carry no colour codes (colour is for a terminal).
#[tokio::test]
async fn text_logs_in_a_file_are_plain() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let port = free_port();
    let log_path = database.data_dir.path().join("text.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = crate::durability::start_with(
        &database,
        port,
        &[("SYNCHUB_LOG_JSON", "false")],
        log.into(),
    )
    .await;
    drop(server);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("synchub is listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}

/// With `database.migrate_at_start` off (the production overlay), `api` and `worker` leave
/// the schema to `synchub migrate`: they wait for it, and name it when it does not come;
/// after it they start. A database that a newer synchub migrated is refused by every command
/// instead of being run on.
async fn the_roles_leave_migrating_to_migrate(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let database = TestDatabase::create(&backend).await;
    let leave = [
        ("SYNCHUB_DATABASE__MIGRATE_AT_START", "false"),
        ("SYNCHUB_DATABASE__SCHEMA_WAIT_SECONDS", "1"),
    ];
    for role in ["api", "worker"] {
        let stderr = fails(
            synchub(&database)
                .arg(role)
                .envs(leave)
                .env("SYNCHUB_LISTEN", format!("127.0.0.1:{}", free_port())),
            &format!("{role} started on no schema"),
        );
        assert!(stderr.contains("run `synchub migrate`"), "{role}: {stderr}");
    }

    succeed(synchub(&database).arg("migrate"));
    let db = database.connect().await;
    assert_eq!(
        synchub::store::schema(&db).await.unwrap(),
        synchub::store::Schema::Current
    );
    let port = free_port();
    let api =
        crate::durability::start_role(&database, port, "api", &leave, std::process::Stdio::null())
            .await;
    drop(api);

    db.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) \
         VALUES ('m20991231_000001_from_a_newer_synchub', 0)",
    )
    .await
    .unwrap();
    for role in ["migrate", "api", "serve"] {
        let stderr = fails(
            synchub(&database)
                .arg(role)
                .env("SYNCHUB_LISTEN", format!("127.0.0.1:{}", free_port())),
            &format!("{role} ran on a newer schema"),
        );
        assert!(
            stderr.contains("m20991231_000001_from_a_newer_synchub")
                && stderr.contains("a newer version migrated it"),
            "{role}: {stderr}"
        );
    }
}
on_both_backends!(the_roles_leave_migrating_to_migrate);

/// In production no operator token is generated and printed (stdout ends in the log
/// pipeline): the service starts without one and says how to get one, and
/// `synchub operator-token` creates one that works, as it recovers a lost one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_prints_no_operator_token() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let key = "q2aDjkNwL6Sw8wJXoVh9v1F+Gm2bKc0n3ZyYt4uRk8E=";
    let port = free_port();
    let mut server = crate::durability::Server(
        synchub(&database)
            .arg("serve")
            .env_remove("SYNCHUB_BOOTSTRAP_TOKEN")
            .env("SYNCHUB_ENV", "production")
            .env("SYNCHUB_MASTER_KEY", key)
            .env("SYNCHUB_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    crate::helpers::eventually(
        "the service is ready",
        std::time::Duration::from_secs(30),
        || {
            let ready = format!("{base}/readyz");
            async move {
                reqwest::get(&ready)
                    .await
                    .and_then(|r| r.error_for_status())
            }
        },
    )
    .await;

    let stdout = succeed(
        synchub(&database)
            .args(["operator-token", "--name", "recovered"])
            .env_remove("SYNCHUB_BOOTSTRAP_TOKEN")
            .env("SYNCHUB_ENV", "production")
            .env("SYNCHUB_MASTER_KEY", key),
    );
    let token = stdout.trim().to_string();
    assert!(token.starts_with("shk_"), "{token}");
    let status = reqwest::Client::new()
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Acme", "timezone": "Asia/Shanghai"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201, "the new operator token works");
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use synchub::store::entities::audit_event;
    let made = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("token.operator_create"))
        .one(&database.connect().await)
        .await
        .unwrap()
        .expect("the audit log holds the new token");
    assert_eq!(made.actor_name, "cli:operator-token");
    assert_eq!(made.details["name"], "recovered");

    // A leaked operator token, even the only one, is revoked from the command line.
    let operator_tokens = || {
        reqwest::Client::new()
            .get(format!("{base}/v1/operator/tokens"))
            .bearer_auth(&token)
            .send()
    };
    let listed: serde_json::Value = operator_tokens().await.unwrap().json().await.unwrap();
    let id = listed["data"][0]["id"].as_str().unwrap().to_string();
    let said = succeed(
        synchub(&database)
            .args(["operator-token", "--revoke", &id])
            .env_remove("SYNCHUB_BOOTSTRAP_TOKEN")
            .env("SYNCHUB_ENV", "production")
            .env("SYNCHUB_MASTER_KEY", key),
    );
    assert!(said.contains(&id), "{said}");
    let status = operator_tokens().await.unwrap().status();
    assert_eq!(status, 401, "revoked from the command line");

    let _ = server.0.kill();
    let finished = std::mem::replace(
        &mut server.0,
        std::process::Command::new("true").spawn().unwrap(),
    )
    .wait_with_output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&finished.stdout);
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(!stdout.contains("shk_"), "a token was printed: {stdout}");
    assert!(
        stderr.contains("synchub operator-token"),
        "the log says how to get a token: {stderr}"
    );
}
