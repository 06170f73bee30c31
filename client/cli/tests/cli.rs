//! The README walkthrough, for real: the `cinder` binary against the dev server's app on a
//! free port, with profiles in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use cinder_server::Clock;

/// Starts the dev server's app on 127.0.0.1:0 over a fresh data folder; returns its URL.
async fn dev_server(data: &Path) -> String {
    let store = cinder_dev::open_store(data).unwrap();
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(data).unwrap());
    let objects = cinder_dev::media_store(data, &url, Clock::system()).unwrap();
    // Every device of these walkthroughs is on 127.0.0.1, and one user logs in (and
    // proves the password again) more than the default 10 times in 15 minutes from it.
    let limits =
        cinder_server::limits::Limits::parse("login_per_address_and_login=40/15m").unwrap();
    let app = cinder_dev::app_with_limits(
        store,
        secrets,
        Clock::system(),
        objects,
        cinder_dev::calls::Calls::unrelayed(),
        limits,
    );
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    url
}

/// Runs `cinder` with a server and profile, off the async runtime's threads.
async fn cinder(server: &str, profile: &Path, args: &[&str]) -> Output {
    cinder_with_input(server, profile, args, "").await
}

/// Runs `cinder` with `input` on its standard input (passwords, one per line).
async fn cinder_with_input(server: &str, profile: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cinder"));
    cmd.arg("--server")
        .arg(server)
        .arg("--profile")
        .arg(profile)
        .args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_publish_get_rotate_and_follow_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let alice = dir.path().join("alice.json");
    let bob = dir.path().join("bob.json");

    // Alice publishes; her profile is private to her.
    let published = cinder(&server, &alice, &["keys", "publish", "--json"]).await;
    assert!(published.status.success(), "{}", stderr(&published));
    let first = json(&published);
    let alice_id = first["user_id"].as_str().unwrap().to_owned();
    assert_eq!(first["version"], 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Publishing twice is refused with a sentence, not a stack trace.
    let twice = cinder(&server, &alice, &["keys", "publish"]).await;
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).starts_with("error: this profile already holds published user"),
        "{}",
        stderr(&twice)
    );

    // Bob fetches and pins Alice's keys.
    let got = cinder(&server, &bob, &["keys", "get", &alice_id, "--json"]).await;
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(json(&got), first);

    // Alice rotates; Bob follows the chain from his pin to version 2.
    let rotated = cinder(&server, &alice, &["keys", "rotate", "--json"]).await;
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let second = json(&rotated);
    assert_eq!(second["version"], 2);
    assert_ne!(second["sign_key"], first["sign_key"]);
    let followed = cinder(&server, &bob, &["keys", "get", &alice_id, "--json"]).await;
    assert!(followed.status.success(), "{}", stderr(&followed));
    assert_eq!(json(&followed), second);

    // Prose output names what a person needs.
    let mine = cinder(&server, &alice, &["keys", "get"]).await;
    assert!(
        stdout(&mine).contains(&format!("user id:      {alice_id}")),
        "{}",
        stdout(&mine)
    );
    assert!(stdout(&mine).contains("version:      2"));

    // Logging out would destroy the only copy of a stand-alone identity: it asks first.
    let refused = cinder(&server, &alice, &["logout"]).await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    let still = cinder(&server, &alice, &["keys", "get"]).await;
    assert!(still.status.success(), "the keys are still here");
    let out = cinder(&server, &alice, &["logout", "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = cinder(&server, &alice, &["keys", "get"]).await;
    assert!(!gone.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_as_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let profile = dir.path().join("p.json");

    let unknown = cinder(&server, &profile, &["keys", "get", &"0".repeat(32)]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).starts_with("error: No user with that id is in the key directory."),
        "{}",
        stderr(&unknown)
    );

    let no_identity = cinder(&server, &profile, &["keys", "rotate"]).await;
    assert!(
        stderr(&no_identity).contains("run `cinder register`"),
        "{}",
        stderr(&no_identity)
    );

    let down = cinder(
        "http://127.0.0.1:9",
        &profile,
        &["keys", "get", &"0".repeat(32)],
    )
    .await;
    assert!(
        stderr(&down).starts_with("error: could not reach the Cinder server at http://127.0.0.1:9"),
        "{}",
        stderr(&down)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keys_refuse_substitution_and_rollback() {
    use cinder_client::{Client, ClientError, Identity};
    use cinder_proto::Timestamp;

    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&dev_server(&dir.path().join("data")).await);
    let v1 = Identity::generate(Timestamp::now()).unwrap();
    client.publish(&v1.bundle).await.unwrap();
    let v2 = v1.rotated(Timestamp::now()).unwrap();

    // A pin of version 2 that the server does not have: the server looks rolled back.
    let rollback = client.verified_keys(v1.user_id(), Some(&v2.bundle)).await;
    assert!(
        matches!(rollback, Err(ClientError::Verification(ref m)) if m.contains("was seen before")),
        "{rollback:?}"
    );

    // A pin of version 1 that differs from what the server serves: a substituted key.
    let mut other = v1.bundle.clone();
    other.created_at = Timestamp(other.created_at.0 + 1);
    let swapped = client.verified_keys(v1.user_id(), Some(&other)).await;
    assert!(
        matches!(swapped, Err(ClientError::Verification(ref m)) if m.contains("without a rotation")),
        "{swapped:?}"
    );

    // After a real rotation, the old pin leads to the new keys.
    client.rotate(&v2.bundle).await.unwrap();
    assert_eq!(
        client
            .verified_keys(v1.user_id(), Some(&v1.bundle))
            .await
            .unwrap(),
        v2.bundle
    );
    assert_eq!(
        client.verified_keys(v1.user_id(), None).await.unwrap(),
        v2.bundle
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_walkthrough_register_login_profile_passwd_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let laptop = dir.path().join("laptop.json");
    let phone = dir.path().join("phone.json");
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    };

    // Register on the laptop: keys are published, the session is cached, the password is not.
    let reg = cinder_with_input(
        &server,
        &laptop,
        &[
            "register",
            "alice",
            "--name",
            "Alice",
            "--password-stdin",
            "--json",
        ],
        "hunter2hunter2\n",
    )
    .await;
    ok(&reg);
    let user_id = json(&reg)["user_id"].as_str().unwrap().to_owned();
    let saved = std::fs::read_to_string(&laptop).unwrap();
    assert!(
        !saved.contains("hunter2"),
        "the profile must never hold the password"
    );
    ok(&cinder(&server, &phone, &["keys", "get", &user_id, "--json"]).await);

    // Log in on the phone: the same identity comes out of the enclave.
    let login = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin", "--json"],
        "hunter2hunter2\n",
    )
    .await;
    ok(&login);
    assert_eq!(json(&login)["user_id"], user_id.as_str());

    // Profile changes on one device reach the other through the enclave.
    ok(&cinder(
        &server,
        &phone,
        &["profile", "set", "--status", "on the train"],
    )
    .await);
    ok(&cinder_with_input(
        &server,
        &laptop,
        &["login", "alice", "--password-stdin"],
        "hunter2hunter2\n",
    )
    .await);
    let who = cinder(&server, &laptop, &["whoami", "--json"]).await;
    ok(&who);
    assert_eq!(json(&who)["status"], "on the train");
    assert_eq!(json(&who)["name"], "Alice");

    // A wrong password and an unknown login read the same.
    let wrong = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin"],
        "nope-nope\n",
    )
    .await;
    let nobody = cinder_with_input(
        &server,
        &phone,
        &["login", "nobody", "--password-stdin"],
        "hunter2hunter2\n",
    )
    .await;
    assert_eq!(stderr(&wrong), "error: wrong login or password\n");
    assert_eq!(stderr(&nobody), stderr(&wrong));

    // Change the password on the laptop; the old one stops working, the new one opens it all.
    ok(&cinder_with_input(
        &server,
        &laptop,
        &["passwd", "--password-stdin"],
        "hunter2hunter2\ncorrect horse battery\n",
    )
    .await);
    let old = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin"],
        "hunter2hunter2\n",
    )
    .await;
    assert_eq!(stderr(&old), "error: wrong login or password\n");
    let new = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin", "--json"],
        "correct horse battery\n",
    )
    .await;
    ok(&new);
    assert_eq!(json(&new)["user_id"], user_id.as_str());

    // Sessions: the laptop's and the phone's are listed; the laptop ends the phone's.
    let listed = cinder(&server, &laptop, &["account", "sessions", "--json"]).await;
    ok(&listed);
    let sessions = json(&listed);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let phone_session = sessions.iter().find(|s| s["current"] == false).unwrap();
    ok(&cinder(
        &server,
        &laptop,
        &["account", "end", phone_session["id"].as_str().unwrap()],
    )
    .await);
    let ended = cinder(&server, &phone, &["whoami"]).await;
    ok(&ended);
    let refused = cinder(&server, &phone, &["profile", "set", "--status", "away"]).await;
    assert!(!refused.status.success(), "an ended session still works");
    let relogin = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin"],
        "correct horse battery\n",
    )
    .await;
    ok(&relogin);

    // Log out: the device forgets the session and keys, and the server ends the session.
    ok(&cinder(&server, &phone, &["logout"]).await);
    let left = cinder(&server, &laptop, &["account", "sessions", "--json"]).await;
    assert_eq!(json(&left).as_array().unwrap().len(), 1);
    let gone = cinder(&server, &phone, &["whoami"]).await;
    assert!(
        stderr(&gone).contains("run `cinder login`"),
        "{}",
        stderr(&gone)
    );
    assert!(
        !std::fs::read_to_string(&phone)
            .unwrap()
            .contains("\"seeds\""),
        "no keys left on the device"
    );

    // Delete needs --yes, then the login is gone.
    let unconfirmed = cinder(&server, &laptop, &["account", "delete"]).await;
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    let wrong = cinder_with_input(
        &server,
        &laptop,
        &["account", "delete", "--yes", "--password-stdin"],
        "not the password\n",
    )
    .await;
    assert_eq!(stderr(&wrong), "error: wrong login or password\n");
    ok(&cinder_with_input(
        &server,
        &laptop,
        &["account", "delete", "--yes", "--password-stdin"],
        "correct horse battery\n",
    )
    .await);
    let after = cinder_with_input(
        &server,
        &phone,
        &["login", "alice", "--password-stdin"],
        "correct horse battery\n",
    )
    .await;
    assert_eq!(stderr(&after), "error: wrong login or password\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_walkthrough_create_invite_chat_kick() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let (alice, bob) = (dir.path().join("alice.json"), dir.path().join("bob.json"));
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    };
    let reg = |p: &Path, name: &str| {
        let (server, p, name) = (server.clone(), p.to_owned(), name.to_owned());
        async move {
            cinder_with_input(
                &server,
                &p,
                &[
                    "register",
                    &name,
                    "--name",
                    &name,
                    "--password-stdin",
                    "--json",
                ],
                "long enough pw\n",
            )
            .await
        }
    };
    let a = reg(&alice, "alice").await;
    ok(&a);
    let alice_id = json(&a)["user_id"].as_str().unwrap().to_owned();
    let b = reg(&bob, "bob").await;
    ok(&b);
    let bob_id = json(&b)["user_id"].as_str().unwrap().to_owned();

    // Alice makes a room with a text channel and a voice channel, and invites Bob.
    ok(&cinder(
        &server,
        &alice,
        &[
            "room",
            "create",
            "team",
            "--channel",
            "general",
            "--burn",
            "3600",
        ],
    )
    .await);
    ok(&cinder(
        &server,
        &alice,
        &[
            "channel", "create", "team", "call", "--voice", "--burn", "600",
        ],
    )
    .await);
    ok(&cinder(
        &server,
        &alice,
        &["invite", "team", &bob_id, "--name", "bob"],
    )
    .await);
    let waiting = cinder(&server, &bob, &["invites", "--json"]).await;
    ok(&waiting);
    assert_eq!(json(&waiting).as_array().unwrap().len(), 1);
    let accepted = cinder(&server, &bob, &["accept"]).await;
    ok(&accepted);
    assert!(
        stdout(&accepted).starts_with("Joined team"),
        "{}",
        stdout(&accepted)
    );

    // They chat; Bob sees who said what.
    ok(&cinder(&server, &alice, &["send", "team", "general", "hello bob"]).await);
    ok(&cinder(&server, &bob, &["send", "team", "general", "hi alice"]).await);
    let read = cinder(&server, &bob, &["read", "team", "general"]).await;
    ok(&read);
    assert_eq!(
        stdout(&read),
        "#1     alice: hello bob\n#2     bob: hi alice\n"
    );
    let members = cinder(&server, &bob, &["members", "team", "--json"]).await;
    ok(&members);
    assert_eq!(json(&members).as_array().unwrap().len(), 2);
    let show = cinder(&server, &bob, &["room", "show", "team"]).await;
    assert!(
        stdout(&show).contains("#call") && stdout(&show).contains("voice"),
        "{}",
        stdout(&show)
    );

    // Alice sends a file; Bob sees it listed and downloads the very bytes.
    let report = dir.path().join("report.txt");
    let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&report, &contents).unwrap();
    let sent = cinder(
        &server,
        &alice,
        &[
            "send",
            "team",
            "general",
            "the report",
            "--file",
            report.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    ok(&sent);
    let number = json(&sent)["number"].as_u64().unwrap().to_string();
    let listed = cinder(&server, &bob, &["read", "team", "general"]).await;
    ok(&listed);
    assert!(
        stdout(&listed).contains("[1] report.txt (195.31 KiB)"),
        "{}",
        stdout(&listed)
    );
    let saved = dir.path().join("got.txt");
    ok(&cinder(
        &server,
        &bob,
        &[
            "download",
            "team",
            "general",
            &number,
            "--out",
            saved.to_str().unwrap(),
        ],
    )
    .await);
    assert_eq!(std::fs::read(&saved).unwrap(), contents);
    let none = cinder(&server, &bob, &["download", "team", "general", "1"]).await;
    assert!(
        stderr(&none).contains("has 0 attachment(s)"),
        "{}",
        stderr(&none)
    );

    // Avatars: Alice (an admin) shows hers at once; Bob's goes to the admins, and Alice's
    // client signs it in on her next room command. Each sees the other's.
    let face = dir.path().join("face.png");
    std::fs::write(&face, vec![0xAB; 30_000]).unwrap();
    let other = dir.path().join("other.png");
    std::fs::write(&other, vec![0xCD; 20_000]).unwrap();
    let set = cinder(
        &server,
        &alice,
        &["profile", "set", "--avatar", face.to_str().unwrap()],
    )
    .await;
    ok(&set);
    assert!(
        stdout(&set).contains("Avatar shown in team."),
        "{}",
        stdout(&set)
    );
    let asked = cinder(
        &server,
        &bob,
        &["profile", "set", "--avatar", other.to_str().unwrap()],
    )
    .await;
    ok(&asked);
    assert!(
        stdout(&asked).contains("sent to the admins"),
        "{}",
        stdout(&asked)
    );
    let listed = cinder(&server, &alice, &["members", "team"]).await;
    ok(&listed);
    assert_eq!(
        stdout(&listed).matches("(avatar)").count(),
        2,
        "{}",
        stdout(&listed)
    );
    let hers = dir.path().join("hers.png");
    ok(&cinder(
        &server,
        &bob,
        &["avatar", "team", &alice_id, "--out", hers.to_str().unwrap()],
    )
    .await);
    assert_eq!(std::fs::read(&hers).unwrap(), vec![0xAB; 30_000]);
    let his = dir.path().join("his.png");
    ok(&cinder(
        &server,
        &alice,
        &["avatar", "team", &bob_id, "--out", his.to_str().unwrap()],
    )
    .await);
    assert_eq!(std::fs::read(&his).unwrap(), vec![0xCD; 20_000]);

    // Alice makes Bob an admin: he takes the admin key and adds a channel himself, which
    // Alice's client verifies as signed by an admin.
    // (His client takes the admin key by itself before the next room command.)
    ok(&cinder(&server, &alice, &["admin", "grant", "team", &bob_id]).await);
    ok(&cinder(&server, &bob, &["channel", "create", "team", "random"]).await);
    let channels = cinder(&server, &alice, &["channel", "list", "team"]).await;
    ok(&channels);
    assert!(
        stdout(&channels).contains("#random"),
        "{}",
        stdout(&channels)
    );
    ok(&cinder(&server, &alice, &["send", "team", "random", "seen it"]).await);
    let random = cinder(&server, &bob, &["read", "team", "random"]).await;
    ok(&random);
    assert_eq!(stdout(&random), "#1     alice: seen it\n");
    // Alice revokes him: the admin key is new, and his old one changes nothing.
    ok(&cinder(&server, &alice, &["admin", "revoke", "team", &bob_id]).await);
    let not_admin = cinder(&server, &bob, &["channel", "create", "team", "mine"]).await;
    assert!(!not_admin.status.success());
    assert!(
        stderr(&not_admin).contains("only a room admin"),
        "{}",
        stderr(&not_admin)
    );

    // Alice removes Bob: he can no longer read, and the room leaves his list.
    ok(&cinder(&server, &alice, &["kick", "team", &bob_id]).await);
    ok(&cinder(&server, &alice, &["send", "team", "general", "bob is gone"]).await);
    let denied = cinder(&server, &bob, &["read", "team", "general"]).await;
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("the room's keys have changed"),
        "{}",
        stderr(&denied)
    );
    // A reader whose output is closed early (`| head`) stops quietly.
    let mut piped = std::process::Command::new(env!("CARGO_BIN_EXE_cinder"))
        .arg("--server")
        .arg(&server)
        .arg("--profile")
        .arg(&alice)
        .args(["read", "team", "general"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(piped.stdout.take());
    let closed = tokio::task::spawn_blocking(move || piped.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(closed.status.success(), "{}", stderr(&closed));
    assert!(!stderr(&closed).contains("panicked"), "{}", stderr(&closed));
    let list = cinder(&server, &bob, &["room", "list", "--json"]).await;
    ok(&list);
    assert_eq!(json(&list), serde_json::json!([]));
    let mine = cinder(&server, &alice, &["read", "team", "general", "--json"]).await;
    ok(&mine);
    assert_eq!(stdout(&mine).lines().count(), 4);
    let prose = cinder(&server, &alice, &["read", "team", "general"]).await;
    assert!(
        stdout(&prose).contains("bob (removed): hi alice"),
        "{}",
        stdout(&prose)
    );
    let members = cinder(&server, &alice, &["members", "team", "--json"]).await;
    assert_eq!(json(&members).as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_follow_shows_new_messages_and_survives_a_rekey() {
    use std::io::BufRead;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let p = |n: &str| dir.path().join(format!("{n}.json"));
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    };
    let mut ids = std::collections::BTreeMap::new();
    for name in ["alice", "bob", "carol"] {
        let reg = cinder_with_input(
            &server,
            &p(name),
            &[
                "register",
                name,
                "--name",
                name,
                "--password-stdin",
                "--json",
            ],
            "long enough pw\n",
        )
        .await;
        ok(&reg);
        ids.insert(name, json(&reg)["user_id"].as_str().unwrap().to_owned());
    }
    ok(&cinder(&server, &p("alice"), &["room", "create", "team"]).await);
    for name in ["bob", "carol"] {
        ok(&cinder(
            &server,
            &p("alice"),
            &["invite", "team", &ids[name], "--name", name],
        )
        .await);
        ok(&cinder(&server, &p(name), &["accept"]).await);
    }

    // GIVEN bob following the channel
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_cinder"))
        .arg("--server")
        .arg(&server)
        .arg("--profile")
        .arg(p("bob"))
        .args(["read", "team", "general", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200))
                && line.contains(want)
            {
                return;
            }
        }
        panic!("--follow never showed {want:?}");
    };

    // WHEN alice writes, then removes carol (new keys) and writes again
    ok(&cinder(&server, &p("alice"), &["send", "team", "general", "first"]).await);
    wait_for("alice: first");
    ok(&cinder(&server, &p("alice"), &["kick", "team", &ids["carol"]]).await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["send", "team", "general", "after the rekey"],
    )
    .await);

    // THEN bob's follow picks up the new keys and shows the new message
    wait_for("alice: after the rekey");
    follow.kill().unwrap();
    let _ = follow.wait();

    // AND the new keys reached bob's enclave, so his next command (whose profile cache the
    // killed follower never updated) reads on; carol cannot.
    let again = cinder(&server, &p("bob"), &["read", "team", "general"]).await;
    ok(&again);
    assert_eq!(stdout(&again).lines().count(), 2);
    assert!(
        !cinder(&server, &p("carol"), &["read", "team", "general"])
            .await
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_remembers_the_newest_enclave_it_saw() {
    use cinder_server::store::AccountStore;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = dev_server(&data).await;
    // The hostile operator's handle on the same database.
    let store = cinder_dev::open_store(&data).unwrap();
    let login_key = cinder_dev::master_secret(&data)
        .unwrap()
        .login_key(&"nina".parse().unwrap());
    let laptop = dir.path().join("laptop.json");
    let reg = cinder_with_input(
        &server,
        &laptop,
        &["register", "nina", "--password-stdin"],
        "a fine password\n",
    )
    .await;
    assert!(reg.status.success(), "{}", stderr(&reg));
    let old = store.account(&login_key).await.unwrap().unwrap();
    // GIVEN the laptop saved a newer enclave
    let set = cinder(&server, &laptop, &["profile", "set", "--status", "newer"]).await;
    assert!(set.status.success(), "{}", stderr(&set));
    // WHEN the server restores the older record
    store.delete_account(&old.login).await.unwrap();
    store.create(&old).await.unwrap();
    // THEN logging in again on the laptop is refused: it remembers version 2
    let again = cinder_with_input(
        &server,
        &laptop,
        &["login", "nina", "--password-stdin"],
        "a fine password\n",
    )
    .await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("rollback"), "{}", stderr(&again));
}

/// `read --follow` as a spawned process; its stdout and stderr lines as they come.
struct Follower {
    child: std::process::Child,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn spawn(server: &str, profile: &Path, env: &[(&str, &str)], extra: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cinder"))
            .arg("--server")
            .arg(server)
            .arg("--profile")
            .arg(profile)
            .args(extra)
            .args(["read", "team", "general", "--follow"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines() {
                    let _ = tx.send(line.unwrap_or_default());
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        Self { child, out, err }
    }

    /// Waits up to `secs` for a line of `rx` containing `want`.
    fn wait(rx: &std::sync::mpsc::Receiver<String>, want: &str, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100))
                && line.contains(want)
            {
                return true;
            }
        }
        false
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_follow_is_pushed_by_the_live_socket_and_polls_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let p = |n: &str| dir.path().join(format!("{n}.json"));
    let ok = |o: &Output| assert!(o.status.success(), "{}", stderr(o));
    let mut ids = std::collections::BTreeMap::new();
    for name in ["alice", "bob"] {
        let reg = cinder_with_input(
            &server,
            &p(name),
            &[
                "register",
                name,
                "--name",
                name,
                "--password-stdin",
                "--json",
            ],
            "long enough pw\n",
        )
        .await;
        ok(&reg);
        ids.insert(name, json(&reg)["user_id"].as_str().unwrap().to_owned());
    }
    ok(&cinder(&server, &p("alice"), &["room", "create", "team"]).await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["invite", "team", &ids["bob"], "--name", "bob"],
    )
    .await);
    ok(&cinder(&server, &p("bob"), &["accept"]).await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["send", "team", "general", "earlier"],
    )
    .await);

    // GIVEN bob following with polling slowed to an hour: only a push can show a message
    let pushed = Follower::spawn(&server, &p("bob"), &[("CINDER_POLL_SECS", "3600")], &[]);
    assert!(
        Follower::wait(&pushed.out, "alice: earlier", 30),
        "caught up"
    );
    // AND bob following where no live socket answers
    let polled = Follower::spawn(
        &server,
        &p("bob"),
        &[("CINDER_POLL_SECS", "1")],
        &["--live-url", "ws://127.0.0.1:9/live"],
    );
    assert!(Follower::wait(&polled.out, "alice: earlier", 30));
    assert!(Follower::wait(&polled.err, "polling instead", 30));

    // WHEN alice writes
    ok(&cinder(&server, &p("alice"), &["send", "team", "general", "pushed"]).await);

    // THEN both show it, the live follower at once and without saying it polls
    assert!(Follower::wait(&pushed.out, "alice: pushed", 10), "pushed");
    assert!(Follower::wait(&polled.out, "alice: pushed", 30), "polled");
    let mut pushed = pushed;
    let _ = pushed.child.kill();
    let _ = pushed.child.wait();
    let said: Vec<String> = std::iter::from_fn(|| {
        pushed
            .err
            .recv_timeout(std::time::Duration::from_secs(5))
            .ok()
    })
    .collect();
    assert!(
        !said.iter().any(|l| l.contains("polling")),
        "the live follower polled: {said:?}"
    );
}

/// The dev server's app with its calls routes and its TURN relay (our `cinder-turn`, in
/// process, on a free loopback port), as `make dev` runs them; returns its URL and the relay
/// (which stops when dropped).
async fn dev_server_with_turn(data: &Path) -> (String, impl Sized + use<>) {
    let store = cinder_dev::open_store(data).unwrap();
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(data).unwrap());
    let objects = cinder_dev::media_store(data, &url, Clock::system()).unwrap();
    let calls = cinder_dev::calls::Calls::unrelayed();
    let relay =
        cinder_dev::calls::start_relay(&calls, "127.0.0.1:0".parse().unwrap(), Clock::system())
            .await
            .unwrap();
    let app = cinder_dev::app_with_calls(store, secrets, Clock::system(), objects, calls);
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    (url, relay)
}

/// Registers `names` (profiles `<name>.json` in `dir`), and has the first make room `team`
/// with a voice channel `voice` and invite the others, who accept. Returns each one's
/// profile and user id.
async fn voice_room(server: &str, dir: &Path, names: &[&str]) -> Vec<(std::path::PathBuf, String)> {
    let ok = |o: &Output| assert!(o.status.success(), "{}", stderr(o));
    let mut people = Vec::new();
    for name in names {
        let profile = dir.join(format!("{name}.json"));
        let reg = cinder_with_input(
            server,
            &profile,
            &[
                "register",
                name,
                "--name",
                name,
                "--password-stdin",
                "--json",
            ],
            "long enough pw\n",
        )
        .await;
        ok(&reg);
        people.push((profile, json(&reg)["user_id"].as_str().unwrap().to_owned()));
    }
    let admin = &people[0].0;
    ok(&cinder(server, admin, &["room", "create", "team"]).await);
    ok(&cinder(
        server,
        admin,
        &[
            "channel", "create", "team", "voice", "--voice", "--burn", "600",
        ],
    )
    .await);
    for (i, (profile, id)) in people.iter().enumerate().skip(1) {
        ok(&cinder(server, admin, &["invite", "team", id, "--name", names[i]]).await);
        ok(&cinder(server, profile, &["accept"]).await);
    }
    people
}

/// `cinder call team voice --relay --json --duration SECS` as a spawned process.
fn spawn_call(server: &str, profile: &Path, secs: u64) -> std::process::Child {
    use std::process::Stdio;
    std::process::Command::new(env!("CARGO_BIN_EXE_cinder"))
        .arg("--server")
        .arg(server)
        .arg("--profile")
        .arg(profile)
        .args(["call", "team", "voice", "--relay", "--json", "--duration"])
        .arg(secs.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a call process; its JSON lines (asserting it succeeded and printed no SDP and
/// no candidate).
async fn call_events(child: std::process::Child) -> Vec<serde_json::Value> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for secret_free in ["a=ice-pwd", "a=fingerprint", "candidate:", "v=0"] {
        assert!(
            !text.contains(secret_free) && !stderr(&out).contains(secret_free),
            "a call printed SDP or a candidate: {text}"
        );
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

/// Asserts that a call's summary names every one of `others` as connected through the
/// relay, with audio packets and data messages received from each.
fn assert_connected_to_all(events: &[serde_json::Value], others: &[&str]) {
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {events:?}"));
    let peers = summary["peers"].as_array().unwrap();
    let mut connected: Vec<&str> = peers.iter().map(|p| p["user"].as_str().unwrap()).collect();
    connected.sort_unstable();
    let mut want = others.to_vec();
    want.sort_unstable();
    assert_eq!(connected, want, "{summary}");
    for p in peers {
        assert_eq!(p["candidate_type"], "relay", "{p}");
        assert!(p["audio_packets"].as_u64().unwrap() > 0, "{p}");
        assert!(p["data_received"].as_u64().unwrap() > 0, "{p}");
        assert!(p["data_sent"].as_u64().unwrap() > 0, "{p}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "connected" && e["candidate_type"] == "relay"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_connect_relay_only_through_the_dev_servers_turn_relay() {
    // GIVEN the dev server with its TURN relay, and Alice and Bob in a room with a voice channel
    let dir = tempfile::tempdir().unwrap();
    let (server, _relay) = dev_server_with_turn(&dir.path().join("data")).await;
    let people = voice_room(&server, dir.path(), &["alice", "bob"]).await;
    // WHEN both join the call, relay only
    let calls: Vec<_> = people
        .iter()
        .map(|(profile, _)| spawn_call(&server, profile, 8))
        .collect();
    // (while it runs, a reader of the channel sees both in the call)
    let mut shown = String::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let read = cinder(&server, &people[1].0, &["read", "team", "voice"]).await;
        shown = stdout(&read);
        if shown.contains("in the call: alice, bob") {
            break;
        }
    }
    assert!(shown.contains("in the call: alice, bob"), "{shown}");
    // THEN each is connected to the other through the relay, with audio and data both ways
    let mut events = Vec::new();
    for call in calls {
        events.push(call_events(call).await);
    }
    assert_connected_to_all(&events[0], &[&people[1].1]);
    assert_connected_to_all(&events[1], &[&people[0].1]);

    // AND reading the voice channel shows who joined and left, a text message, and never
    // the SDP or candidates the signals carried
    let ok = |o: &Output| assert!(o.status.success(), "{}", stderr(o));
    ok(&cinder(&server, &people[0].0, &["send", "team", "voice", "see you"]).await);
    let read = cinder(&server, &people[1].0, &["read", "team", "voice"]).await;
    ok(&read);
    let text = stdout(&read);
    for line in [
        "alice joined the call",
        "bob joined the call",
        "alice left the call",
        "bob left the call",
        "nobody is in the call",
        "alice: see you",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("v=0") && !text.contains("candidate"),
        "{text}"
    );
    assert!(stderr(&read).is_empty(), "{}", stderr(&read));
    let read = cinder(&server, &people[1].0, &["read", "team", "voice", "--json"]).await;
    ok(&read);
    let lines: Vec<serde_json::Value> = stdout(&read)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["call"] == "joined"));
    assert!(lines.iter().any(|l| l["text"] == "see you"));
    assert!(!stdout(&read).contains("sdp") && !stdout(&read).contains("candidate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_callers_make_a_full_mesh_relay_only() {
    // GIVEN the dev server with its TURN relay, and four members of a room's voice channel
    let dir = tempfile::tempdir().unwrap();
    let (server, _relay) = dev_server_with_turn(&dir.path().join("data")).await;
    let people = voice_room(&server, dir.path(), &["alice", "bob", "carol", "dave"]).await;
    // WHEN all four join the call, relay only
    let calls: Vec<_> = people
        .iter()
        .map(|(profile, _)| spawn_call(&server, profile, 12))
        .collect();
    // THEN each is connected to each of the three others through the relay, with audio
    // packets and data messages from each
    for (i, call) in calls.into_iter().enumerate() {
        let events = call_events(call).await;
        let others: Vec<&str> = people
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, id))| id.as_str())
            .collect();
        assert_connected_to_all(&events, &others);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_rename_and_manage_channels_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let p = |n: &str| dir.path().join(format!("{n}.json"));
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    };
    let mut ids = std::collections::BTreeMap::new();
    for name in ["alice", "bob", "carol"] {
        let reg = cinder_with_input(
            &server,
            &p(name),
            &[
                "register",
                name,
                "--name",
                name,
                "--password-stdin",
                "--json",
            ],
            "long enough pw\n",
        )
        .await;
        ok(&reg);
        ids.insert(name, json(&reg)["user_id"].as_str().unwrap().to_owned());
    }
    ok(&cinder(&server, &p("alice"), &["room", "create", "team"]).await);
    for name in ["bob", "carol"] {
        ok(&cinder(
            &server,
            &p("alice"),
            &["invite", "team", &ids[name], "--name", name],
        )
        .await);
        ok(&cinder(&server, &p(name), &["accept"]).await);
    }
    let show = |who: &'static str, room: &'static str| {
        let (server, profile) = (server.clone(), p(who));
        async move {
            let o = cinder(&server, &profile, &["room", "show", room, "--json"]).await;
            assert!(o.status.success(), "{}", stderr(&o));
            json(&o)["spine"].clone()
        }
    };

    // Bob leaves: his device forgets the room at once.
    let left = cinder(&server, &p("bob"), &["leave", "team"]).await;
    ok(&left);
    assert!(stdout(&left).contains("Left team"), "{}", stdout(&left));
    assert!(
        !cinder(&server, &p("bob"), &["read", "team", "general"])
            .await
            .status
            .success()
    );
    // Alice's next room command applies his request: removed, with new keys.
    ok(&cinder(&server, &p("alice"), &["room", "rename", "team", "crew"]).await);
    let spine = show("carol", "crew").await;
    assert_eq!(spine["name"], "crew");
    assert_eq!(spine["epoch"], 2);
    let members: Vec<_> = spine["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !members.contains(&ids["bob"]),
        "bob is removed: {members:?}"
    );

    // Channels: renamed, re-timed, added and deleted, as every member sees them.
    ok(&cinder(
        &server,
        &p("alice"),
        &["channel", "rename", "crew", "general", "lobby"],
    )
    .await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["channel", "burn", "crew", "lobby", "60"],
    )
    .await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["channel", "create", "crew", "extra"],
    )
    .await);
    ok(&cinder(
        &server,
        &p("alice"),
        &["channel", "delete", "crew", "extra"],
    )
    .await);
    let spine = show("carol", "crew").await;
    let channels = spine["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(channels[0]["name"], "lobby");
    assert_eq!(channels[0]["burn_secs"], 60);
    assert_eq!(channels[0]["burn_history"][0]["burn_secs"], 24 * 3600);
    ok(&cinder(&server, &p("carol"), &["send", "crew", "lobby", "hi"]).await);
    let read = cinder(&server, &p("alice"), &["read", "crew", "lobby"]).await;
    ok(&read);
    assert!(stdout(&read).contains("carol: hi"), "{}", stdout(&read));

    // The last admin cannot leave; once Carol is an admin too, Alice can.
    let refused = cinder(&server, &p("alice"), &["leave", "crew"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("last admin"),
        "{}",
        stderr(&refused)
    );
    ok(&cinder(
        &server,
        &p("alice"),
        &["admin", "grant", "crew", &ids["carol"]],
    )
    .await);
    ok(&cinder(&server, &p("alice"), &["leave", "crew"]).await);
    let spine = show("carol", "crew").await;
    assert_eq!(spine["epoch"], 3);
    assert_eq!(spine["members"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_replies_and_reactions_show_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir.path().join("data")).await;
    let (alice, bob) = (dir.path().join("alice.json"), dir.path().join("bob.json"));
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    };
    let mut ids = Vec::new();
    for (p, name) in [(&alice, "alice"), (&bob, "bob")] {
        let r = cinder_with_input(
            &server,
            p,
            &[
                "register",
                name,
                "--name",
                name,
                "--password-stdin",
                "--json",
            ],
            "long enough pw\n",
        )
        .await;
        ok(&r);
        ids.push(json(&r)["user_id"].as_str().unwrap().to_owned());
    }
    ok(&cinder(&server, &alice, &["room", "create", "team"]).await);
    ok(&cinder(
        &server,
        &alice,
        &["invite", "team", &ids[1], "--name", "bob"],
    )
    .await);
    ok(&cinder(&server, &bob, &["accept"]).await);

    // Alice writes, Bob replies and reacts, Alice fixes her typo and reacts too.
    ok(&cinder(
        &server,
        &alice,
        &["send", "team", "general", "lnuch at noon?"],
    )
    .await);
    let replied = cinder(
        &server,
        &bob,
        &["reply", "team", "general", "1", "yes, the noodle place"],
    )
    .await;
    ok(&replied);
    assert!(
        stdout(&replied).starts_with("Replied to #1"),
        "{}",
        stdout(&replied)
    );
    ok(&cinder(&server, &bob, &["react", "team", "general", "1", "👍"]).await);
    ok(&cinder(&server, &bob, &["react", "team", "general", "1", "🎉"]).await);
    ok(&cinder(
        &server,
        &bob,
        &["react", "team", "general", "1", "🎉", "--remove"],
    )
    .await);
    ok(&cinder(
        &server,
        &alice,
        &["edit", "team", "general", "1", "lunch at noon?"],
    )
    .await);
    ok(&cinder(
        &server,
        &alice,
        &["react", "team", "general", "1", "👍", "--burn", "60"],
    )
    .await);
    // Bob cannot edit Alice's message: the CLI says so (and readers would refuse it).
    let forged = cinder(
        &server,
        &bob,
        &["edit", "team", "general", "1", "lunch at 3"],
    )
    .await;
    assert!(!forged.status.success());
    assert!(
        stderr(&forged).contains("only its sender can edit"),
        "{}",
        stderr(&forged)
    );

    let read = cinder(&server, &bob, &["read", "team", "general"]).await;
    ok(&read);
    assert_eq!(
        stdout(&read),
        "#1     alice: lunch at noon? (edited)\n\
         \u{20}      👍 2 (bob, alice)\n\
         #2     bob: yes, the noodle place\n\
         \u{20}      ↪ #1 alice: lunch at noon?\n"
    );
    assert!(stderr(&read).is_empty(), "{}", stderr(&read));
    // Replies to messages not read still show, marked.
    let later = cinder(&server, &bob, &["read", "team", "general", "--after", "1"]).await;
    ok(&later);
    assert!(
        stdout(&later).contains("↪ #1 (not shown)")
            && stdout(&later).contains("#1     (not shown) 👍 2 (bob, alice)"),
        "{}",
        stdout(&later)
    );
    let read = cinder(&server, &bob, &["read", "team", "general", "--json"]).await;
    ok(&read);
    let lines: Vec<serde_json::Value> = stdout(&read)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&read));
    assert_eq!(lines[0]["text"], "lunch at noon?");
    assert_eq!(lines[0]["edited"], true);
    assert_eq!(lines[0]["reactions"][0]["emoji"], "👍");
    assert_eq!(lines[0]["reactions"][0]["count"], 2);
    assert_eq!(lines[1]["reply_to"], 1);
    assert_eq!(lines[1]["edited"], false);

    // A follower shows an edit and a reaction that come later by showing the message again.
    let follower = Follower::spawn(&server, &bob, &[], &[]);
    assert!(Follower::wait(
        &follower.out,
        "bob: yes, the noodle place",
        30
    ));
    ok(&cinder(
        &server,
        &bob,
        &["edit", "team", "general", "2", "yes, the ramen place"],
    )
    .await);
    assert!(
        Follower::wait(
            &follower.out,
            "#2     bob: yes, the ramen place (edited)",
            30
        ),
        "the edit was not shown"
    );
    ok(&cinder(&server, &alice, &["react", "team", "general", "2", "🍜"]).await);
    assert!(
        Follower::wait(&follower.out, "🍜 1 (alice)", 30),
        "the reaction was not shown"
    );
}
