//! `make bench`: what each API operation costs to run. Every API function's shipped binary
//! (built by `make bench` into target/release first) runs under the Lambda Runtime API
//! emulator behind the API Gateway stand-in, on moto through the counting proxy
//! (`cinder_tests::meter`), and the reference client performs each operation. For each one
//! this prints the client's HTTP requests, Lambda invocations, DynamoDB reads and writes
//! with their capacity units, S3 and Secrets Manager calls, and the price at list prices;
//! then what each route does, and the cost of a million messages sent and read.
//!
//! The scenario runs twice on the same deployment and the table shows the second run, the
//! steady state: clients have pinned the keys of the users they deal with, and every
//! function is warm. What the first run did differently is listed under the table.
//!
//! Run alone: `cargo build --release -p cinder-keys -p cinder-enclave -p cinder-spine
//! -p cinder-shards -p cinder-media && cargo bench -p cinder-tests --bench operations`
//! (`CINDER_FUNCTIONS_DIR` points elsewhere for the binaries).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cinder_client::account::{LoggedIn, UserProfile};
use cinder_client::media::FileToSend;
use cinder_client::rooms::Membership;
use cinder_client::{Client, Identity};
use cinder_proto::accounts::KsfParams;
use cinder_proto::{ChannelId, KeyBundle, RoomId, Timestamp, UserId};
use cinder_tests::meter::{self, Deployment, Event, LIST_PRICES, Tally, units};

/// A message of this many characters is "a message" in the per-million figures.
const SHORT: usize = 100;
/// The long message, to show what size does.
const LONG: usize = 1000;
/// The attachment's size.
const FILE_BYTES: usize = 1 << 20;
/// A full page as the client reads it (the server's default page size).
const PAGE: usize = 50;
/// The avatar's size.
const AVATAR_BYTES: usize = 16 * 1024;
/// A sealed envelope's size (an invitation's is about this).
const ENVELOPE_BYTES: usize = 1000;
/// How many users one lookup asks for.
const LOOKUP_USERS: usize = 10;
/// The channels' burn time.
const BURN: u64 = 86_400;

/// One measured operation.
struct Measured {
    section: &'static str,
    label: String,
    tally: Tally,
    events: Vec<Event>,
}

/// The deployment and what has been measured on it.
struct Bench<'a> {
    d: &'a Deployment,
    client: Client,
    results: Vec<Measured>,
}

impl Bench<'_> {
    /// Runs `work` and records what it did under `label`.
    async fn op<T>(
        &mut self,
        section: &'static str,
        label: &str,
        work: impl Future<Output = T>,
    ) -> T {
        let (mark, invoked) = (self.d.meter.mark(), self.d.invocations());
        let out = work.await;
        let events = self.d.meter.since(mark);
        let mut tally = Tally::of(&events);
        tally.invocations = self.d.invocations() - invoked;
        assert_eq!(
            tally.invocations, tally.api_requests,
            "{label}: every gateway route is a function, so one invocation per request"
        );
        self.results.push(Measured {
            section,
            label: label.to_owned(),
            tally,
            events,
        });
        out
    }
}

/// A user with an account, as a device holds them.
struct User {
    me: LoggedIn,
    rooms: BTreeMap<RoomId, Membership>,
    pins: BTreeMap<UserId, KeyBundle>,
}

impl User {
    fn identity(&self) -> &Identity {
        &self.me.contents.identity
    }
    fn id(&self) -> UserId {
        self.identity().user_id()
    }
}

async fn register(client: &Client, login: &str) -> LoggedIn {
    client
        .register(
            &login.parse().unwrap(),
            b"a long password",
            UserProfile {
                name: login.into(),
                ..Default::default()
            },
            KsfParams::FLOOR,
        )
        .await
        .unwrap()
}

fn text(chars: usize) -> String {
    "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

/// What is set up once: two users with accounts in a room with a channel, users to look
/// up, and a room made with raw requests (for the one route the client does not use).
struct World {
    alice: User,
    bob: User,
    room: RoomId,
    general: ChannelId,
    lookup: Vec<UserId>,
    raw_room: cinder_tests::rooms::RoomCaps,
}

async fn set_up(client: &Client, gateway: &str) -> World {
    let mut alice = User {
        me: register(client, "alice").await,
        rooms: BTreeMap::new(),
        pins: BTreeMap::new(),
    };
    let mut bob = User {
        me: register(client, "bob").await,
        rooms: BTreeMap::new(),
        pins: BTreeMap::new(),
    };
    let (mut m, spine) = client
        .create_room(
            alice.identity(),
            "alice",
            "main",
            &[("general".into(), false, BURN)],
        )
        .await
        .unwrap();
    let general = spine.channels[0].id;
    let bob_keys = client.verified_keys(bob.id(), None).await.unwrap();
    client
        .invite(
            &alice.me.contents.identity,
            &mut m,
            &bob_keys,
            "bob",
            &mut alice.pins,
        )
        .await
        .unwrap();
    alice.pins.insert(bob.id(), bob_keys);
    let room = m.room;
    alice.rooms.insert(room, m);
    let joined = client
        .accept_invites(&bob.me.contents.identity, &mut bob.rooms, &mut bob.pins)
        .await
        .unwrap();
    assert_eq!(joined, vec![room]);
    let mut lookup = vec![alice.id(), bob.id()];
    while lookup.len() < LOOKUP_USERS {
        let other = Identity::generate(Timestamp::now()).unwrap();
        client.publish(&other.bundle).await.unwrap();
        lookup.push(other.user_id());
    }
    // A room the client does not make: its capabilities are the test fixtures', its sealed
    // spine 1 KiB of noise, which the server cannot tell from a real one.
    let raw_room = cinder_tests::rooms::RoomCaps::new(0x5a, &[ChannelId([0x5b; 16])]);
    let body = serde_json::to_vec(&raw_room.create_body(&[7u8; 1024])).unwrap();
    let status = raw(gateway, &raw_room.admin, "POST", "/rooms", body).await;
    assert_eq!(status, 201);
    World {
        alice,
        bob,
        room,
        general,
        lookup,
        raw_room,
    }
}

/// A request signed by a capability, made without the reference client. Returns the status.
async fn raw(
    gateway: &str,
    signer: &cinder_tests::fixtures::Capability,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> u16 {
    let mut request =
        reqwest::Client::new().request(method.parse().unwrap(), format!("{gateway}{path}"));
    for (name, value) in signer.sign(method, path, &body, Timestamp::now()) {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    request.send().await.unwrap().status().as_u16()
}

/// One run of every operation.
async fn scenario(b: &mut Bench<'_>, w: &mut World, pass: usize, dir: &std::path::Path) {
    let client = Client::new(b.client.base_url());
    let c = &client;

    // Accounts: a user's whole life.
    let login: cinder_proto::accounts::Login = format!("carol{pass}").parse().unwrap();
    let profile = UserProfile {
        name: "Carol".into(),
        ..Default::default()
    };
    let mut carol = b
        .op(
            "accounts",
            "register (`Client::register`: OPAQUE, then publish keys)",
            c.register(&login, b"first password", profile, KsfParams::FLOOR),
        )
        .await
        .unwrap();
    let again = b
        .op(
            "accounts",
            "log in (`Client::login`, then its keys check)",
            c.login(&login, b"first password", 1, Some(&carol.server_key)),
        )
        .await
        .unwrap();
    assert_eq!(
        again.contents.identity.user_id(),
        carol.contents.identity.user_id()
    );
    b.op(
        "accounts",
        "read the enclave (`Client::refresh_enclave`)",
        c.refresh_enclave(&mut carol),
    )
    .await
    .unwrap();
    carol.contents.profile.status = "busy".into();
    b.op(
        "accounts",
        "write the enclave (`Client::save_enclave`)",
        c.save_enclave(&mut carol),
    )
    .await
    .unwrap();
    b.op(
        "accounts",
        "change the password (`Client::change_password`)",
        c.change_password(
            &mut carol,
            b"first password",
            b"second password",
            KsfParams::FLOOR,
        ),
    )
    .await
    .unwrap();
    // A password change ends every session, this one too.
    let carol = c
        .login(&login, b"second password", 1, Some(&carol.server_key))
        .await
        .unwrap();
    b.op(
        "accounts",
        "delete the account (`Client::delete_account`)",
        c.delete_account(&carol, b"second password"),
    )
    .await
    .unwrap();

    // Keys.
    let dave = Identity::generate(Timestamp::now()).unwrap();
    b.op(
        "keys",
        "publish a first bundle (`Client::publish`)",
        c.publish(&dave.bundle),
    )
    .await
    .unwrap();
    b.op(
        "keys",
        "fetch one bundle (`Client::key`)",
        c.key(dave.user_id()),
    )
    .await
    .unwrap();
    let v1 = b
        .op(
            "keys",
            "verify a user's keys first seen: pin them (`Client::verified_keys`, no pin)",
            c.verified_keys(dave.user_id(), None),
        )
        .await
        .unwrap();
    let dave2 = dave.rotated(Timestamp::now()).unwrap();
    b.op("keys", "rotate (`Client::rotate`)", c.rotate(&dave2.bundle))
        .await
        .unwrap();
    let v2 = b
        .op(
            "keys",
            "verify a user's keys after a rotation (`Client::verified_keys`, old pin)",
            c.verified_keys(dave.user_id(), Some(&v1)),
        )
        .await
        .unwrap();
    b.op(
        "keys",
        "verify a pinned user's keys, unchanged (`Client::verified_keys`)",
        c.verified_keys(dave.user_id(), Some(&v2)),
    )
    .await
    .unwrap();
    b.op(
        "keys",
        "one page of a key chain, 2 versions (`Client::chain`)",
        c.chain(dave.user_id(), 0),
    )
    .await
    .unwrap();
    b.op(
        "keys",
        &format!("fetch {LOOKUP_USERS} users' bundles (`Client::lookup`)"),
        c.lookup(w.lookup.clone()),
    )
    .await
    .unwrap();

    // Inbox: Dave drops a sealed envelope for Alice, who lists and deletes it.
    let envelope = b
        .op(
            "inbox",
            &format!("send an envelope of {ENVELOPE_BYTES} bytes (`Client::drop_envelope`)"),
            c.drop_envelope(&dave2, w.alice.id(), vec![3u8; ENVELOPE_BYTES], None),
        )
        .await
        .unwrap();
    let page = b
        .op(
            "inbox",
            "list one's inbox, 1 envelope (`Client::inbox`)",
            c.inbox(w.alice.identity(), None, None),
        )
        .await
        .unwrap();
    assert_eq!(page.envelopes.len(), 1);
    b.op(
        "inbox",
        "delete an envelope (`Client::delete_envelope`)",
        c.delete_envelope(w.alice.identity(), envelope.id),
    )
    .await
    .unwrap();

    // Rooms.
    let alice_id = w.alice.identity().clone();
    let (mut scratch, _) = b
        .op(
            "rooms",
            "create a room with 1 channel (`Client::create_room`)",
            c.create_room(&alice_id, "alice", "scratch", &[("c".into(), false, BURN)]),
        )
        .await
        .unwrap();
    let erin = Identity::generate(Timestamp::now()).unwrap();
    c.publish(&erin.bundle).await.unwrap();
    b.op(
        "rooms",
        "invite a user whose keys are verified (`Client::invite`)",
        c.invite(
            &alice_id,
            &mut scratch,
            &erin.bundle,
            "erin",
            &mut w.alice.pins,
        ),
    )
    .await
    .unwrap();
    let (mut erin_rooms, mut erin_pins) = (BTreeMap::new(), BTreeMap::new());
    let joined = b
        .op(
            "rooms",
            "accept the invitation (`Client::accept_invites`)",
            c.accept_invites(&erin, &mut erin_rooms, &mut erin_pins),
        )
        .await
        .unwrap();
    assert_eq!(joined.len(), 1);
    let m = w.alice.rooms.get_mut(&w.room).unwrap();
    b.op(
        "rooms",
        "bring a room up to date, nothing new (`Client::room`)",
        c.room(m, &mut w.alice.pins),
    )
    .await
    .unwrap();
    let raw_path = w.raw_room.path();
    let gateway = b.client.base_url().to_owned();
    let status = b
        .op(
            "rooms",
            "get a room's record (raw `GET /rooms/{id}`: the client never asks)",
            raw(&gateway, &w.raw_room.member, "GET", &raw_path, Vec::new()),
        )
        .await;
    assert_eq!(status, 200);
    let m = w.alice.rooms.get_mut(&w.room).unwrap();
    let added = b
        .op(
            "rooms",
            "add a channel to a 2-member room (`Client::add_channel`)",
            c.add_channel(
                &alice_id,
                m,
                (&format!("extra{pass}"), false, BURN),
                &mut w.alice.pins,
            ),
        )
        .await
        .unwrap();
    let bob_id = w.bob.identity().clone();
    let m = w.bob.rooms.get_mut(&w.room).unwrap();
    b.op(
        "rooms",
        "bring a room up to date, 1 new state (`Client::room`)",
        c.room(m, &mut w.bob.pins),
    )
    .await
    .unwrap();
    let took = b
        .op(
            "rooms",
            "take new keys from one's inbox, 1 envelope (`Client::take_keys`)",
            c.take_keys(&bob_id, &mut w.bob.rooms, &mut w.bob.pins),
        )
        .await
        .unwrap();
    assert_eq!(took, vec![w.room]);
    assert!(w.bob.rooms[&w.room].holds_channel_key(added));
    b.op(
        "rooms",
        "delete a room (`Client::delete_room`)",
        c.delete_room(&scratch),
    )
    .await
    .unwrap();

    // Messages: Alice sends, Bob reads.
    let general = w.general;
    let m = w.alice.rooms.get_mut(&w.room).unwrap();
    let long = b
        .op(
            "messages",
            &format!("send a {LONG}-character message (`Client::send_message`)"),
            c.send_message(&alice_id, m, general, &text(LONG), BURN),
        )
        .await
        .unwrap();
    let short = b
        .op(
            "messages",
            &format!("send a {SHORT}-character message (`Client::send_message`)"),
            c.send_message(&alice_id, m, general, &text(SHORT), BURN),
        )
        .await
        .unwrap();
    let bm = w.bob.rooms[&w.room].clone();
    let polled = b
        .op(
            "messages",
            &format!("read a page holding 1 new {SHORT}-character message (`Client::read`)"),
            c.read(&bm, general, long, &mut w.bob.pins),
        )
        .await
        .unwrap();
    assert_eq!(polled.messages.len(), 1);
    assert!(polled.refused.is_empty());
    let before = short;
    let mut last = short;
    for _ in 0..PAGE {
        last = c
            .send_message(&alice_id, m, general, &text(SHORT), BURN)
            .await
            .unwrap();
    }
    let full = b
        .op(
            "messages",
            &format!("read a full page: {PAGE} {SHORT}-character messages (`Client::read`)"),
            c.read(&bm, general, before, &mut w.bob.pins),
        )
        .await
        .unwrap();
    assert_eq!(full.messages.len(), PAGE, "{:?}", full.refused);
    assert_eq!(full.last, Some(last));
    let nothing = b
        .op(
            "messages",
            "read a page, nothing new (`Client::read`)",
            c.read(&bm, general, last, &mut w.bob.pins),
        )
        .await
        .unwrap();
    assert!(nothing.messages.is_empty());
    b.op(
        "messages",
        "get one message (`Client::message`)",
        c.message(&bm, general, short, &mut w.bob.pins),
    )
    .await
    .unwrap();
    b.op(
        "messages",
        "delete one's message (`Client::delete_message`)",
        c.delete_message(&alice_id, m, general, short),
    )
    .await
    .unwrap();

    // Media.
    let path = dir.join(format!("report{pass}.bin"));
    std::fs::write(&path, vec![9u8; FILE_BYTES]).unwrap();
    let with_file = b
        .op(
            "media",
            "send a message with a 1 MiB file (`Client::send_files`)",
            c.send_files(
                &alice_id,
                m,
                general,
                ("the report", &[FileToSend::new(&path)]),
                BURN,
                None,
            ),
        )
        .await
        .unwrap();
    let page = c
        .read(&bm, general, with_file - 1, &mut w.bob.pins)
        .await
        .unwrap();
    let attachment = page.messages[0].attachments()[0].clone();
    let mut sink = Vec::new();
    let got = b
        .op(
            "media",
            "download a 1 MiB attachment (`Client::download`)",
            c.download(&bm, general, with_file, &attachment, &mut sink, None),
        )
        .await
        .unwrap();
    assert_eq!(got, FILE_BYTES as u64);
    let m = w.alice.rooms.get_mut(&w.room).unwrap();
    let shown = b
        .op(
            "media",
            "set one's avatar, 16 KiB, as an admin (`Client::set_avatar`)",
            c.set_avatar(
                &alice_id,
                m,
                &vec![pass as u8; AVATAR_BYTES],
                &mut w.alice.pins,
            ),
        )
        .await
        .unwrap();
    assert!(shown);
    let m = w.bob.rooms.get_mut(&w.room).unwrap();
    c.room(m, &mut w.bob.pins).await.unwrap();
    let m = w.bob.rooms[&w.room].clone();
    let picture = b
        .op(
            "media",
            "fetch a member's avatar (`Client::avatar`)",
            c.avatar(&m, w.alice.id()),
        )
        .await
        .unwrap();
    assert_eq!(picture.map(|p| p.len()), Some(AVATAR_BYTES));
}

/// Dollars, with enough digits to see.
fn dollars(x: f64) -> String {
    if x >= 0.1 {
        format!("${x:.2}")
    } else if x >= 0.001 {
        format!("${x:.4}")
    } else {
        format!("${x:.7}")
    }
}

/// A number of requests or units in a million operations, as "2 million" or "15,000".
fn count(x: f64) -> String {
    if x >= 1e6 {
        format!("{} million", units(x / 1e6))
    } else {
        let n = x.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    }
}

/// The cost of `times` operations costing `t` each, line by line.
fn arithmetic(t: &Tally, times: f64) -> String {
    let p = LIST_PRICES;
    let mut out = String::new();
    let mut total = 0.0;
    let mut line = |what: String, cost: f64| {
        if cost > 0.0 {
            total += cost;
            writeln!(out, "    {what:<78} {:>10}", dollars(cost)).unwrap();
        }
    };
    let n = |x: f64| x * times;
    line(
        format!(
            "HTTP API: {} requests × $1.00 per million",
            count(n(t.api_requests as f64))
        ),
        n(t.api_requests as f64) * p.api_request,
    );
    line(
        format!(
            "Lambda: {} requests × $0.20 per million",
            count(n(t.invocations as f64))
        ),
        n(t.invocations as f64) * p.lambda_request,
    );
    line(
        format!(
            "Lambda: {} invocations × 0.005 GB-s = {} GB-s × $0.0000133334",
            count(n(t.invocations as f64)),
            count(n(t.invocations as f64) * p.lambda_gb_s_each)
        ),
        n(t.invocations as f64) * p.lambda_gb_s_each * p.lambda_gb_s,
    );
    line(
        format!("DynamoDB: {} WRU × $0.625 per million", count(n(t.wru))),
        n(t.wru) * p.wru,
    );
    line(
        format!("DynamoDB: {} RRU × $0.125 per million", count(n(t.rru))),
        n(t.rru) * p.rru,
    );
    if t.s3_put_class > 0 {
        line(
            format!(
                "S3: {} PUT-class requests × $0.005 per 1,000",
                count(n(t.s3_put_class as f64))
            ),
            n(t.s3_put_class as f64) * p.s3_put,
        );
    }
    if t.s3_get_class > 0 {
        line(
            format!(
                "S3: {} GET-class requests × $0.0004 per 1,000",
                count(n(t.s3_get_class as f64))
            ),
            n(t.s3_get_class as f64) * p.s3_get,
        );
    }
    writeln!(out, "    {:<78} {:>10}", "total", dollars(total)).unwrap();
    out
}

fn report(results: &[Measured], first: &[Measured], startup: &[Event]) -> String {
    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "Operations, steady state (the scenario's second run): each function's shipped binary \
         under the Lambda Runtime API emulator, on moto through the counting proxy; prices \
         per million operations at the list prices of docs/COST.md (Lambda: 256 MB, 20 ms). \
         DynamoDB reads and writes are requests (a transaction is one write request); RRU and \
         WRU are the capacity units on-demand bills for them.\n"
    )
    .unwrap();
    writeln!(
        w,
        "| operation | HTTP API requests | S3 requests (client, presigned) | Lambda invocations \
         | DynamoDB reads | RRU | DynamoDB writes | WRU | S3 by functions | Secrets Manager \
         | per million |"
    )
    .unwrap();
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    let mut section = "";
    for r in results {
        if r.section != section {
            section = r.section;
            writeln!(w, "| **{section}** | | | | | | | | | | |").unwrap();
        }
        let t = &r.tally;
        let s3_fn = t.s3_put_class + t.s3_get_class + t.s3_free - t.s3_direct;
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            t.api_requests,
            t.s3_direct,
            t.invocations,
            t.ddb_reads,
            units(t.rru),
            t.ddb_writes,
            units(t.wru),
            s3_fn,
            t.secrets,
            dollars(t.cost(&LIST_PRICES) * 1e6)
        )
        .unwrap();
    }

    writeln!(
        w,
        "\nWhat each request does (steady state; a route with different work in different \
         operations has a line for each):\n"
    )
    .unwrap();
    writeln!(w, "| request | times | AWS calls (capacity units) |").unwrap();
    writeln!(w, "|---|---:|---|").unwrap();
    let mut routes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in results {
        for req in meter::by_request(&r.events) {
            *routes
                .entry((req.route.clone(), req.describe()))
                .or_default() += 1;
        }
    }
    for ((route, calls), times) in &routes {
        writeln!(w, "| `{route}` | {times} | {calls} |").unwrap();
    }

    writeln!(
        w,
        "\nThe scenario's first run, where it differed from the second (the table): one-time \
         work, and state that grows from run to run (each run adds a channel to the room):\n"
    )
    .unwrap();
    let mut any = false;
    for (f, r) in first.iter().zip(results) {
        let (a, b) = (&f.tally, &r.tally);
        if a != b {
            any = true;
            writeln!(
                w,
                "- {}: {} requests, {} DynamoDB reads ({} RRU), {} writes ({} WRU) \
                 (steady: {}, {} ({}), {} ({}))",
                f.label,
                a.api_requests,
                a.ddb_reads,
                units(a.rru),
                a.ddb_writes,
                units(a.wru),
                b.api_requests,
                b.ddb_reads,
                units(b.rru),
                b.ddb_writes,
                units(b.wru)
            )
            .unwrap();
        }
    }
    if !any {
        writeln!(w, "- none").unwrap();
    }
    let started: Vec<String> = startup
        .iter()
        .filter_map(|e| match e {
            Event::Aws(c) => Some(c.describe()),
            Event::Request { .. } => None,
        })
        .collect();
    writeln!(
        w,
        "\nFunction start-up (once per cold start, before any request): {}\n",
        if started.is_empty() {
            "nothing".into()
        } else {
            started.join("; ")
        }
    )
    .unwrap();

    let find = |prefix: &str| {
        &results
            .iter()
            .find(|r| r.label.starts_with(prefix))
            .unwrap_or_else(|| panic!("no operation {prefix}"))
            .tally
    };
    let send = find(&format!("send a {SHORT}-character message"));
    let page = find("read a full page");
    let poll = find("read a page holding 1 new");
    writeln!(
        w,
        "A million {SHORT}-character messages sent (`Client::send_message`: {} HTTP API \
         requests, {} WRU, {} RRU each):\n",
        send.api_requests,
        units(send.wru),
        units(send.rru)
    )
    .unwrap();
    w.push_str(&arithmetic(send, 1e6));
    writeln!(
        w,
        "\nA million messages read in full pages (`Client::read`, {PAGE} a page: {} pages of \
         {} HTTP API requests, {} WRU, {} RRU each):\n",
        count(1e6 / PAGE as f64),
        page.api_requests,
        units(page.wru),
        units(page.rru)
    )
    .unwrap();
    w.push_str(&arithmetic(page, 1e6 / PAGE as f64));
    writeln!(
        w,
        "\nA million messages read one at a time (`Client::read` finding 1 new message: {} \
         HTTP API requests, {} WRU, {} RRU each):\n",
        poll.api_requests,
        units(poll.wru),
        units(poll.rru)
    )
    .unwrap();
    w.push_str(&arithmetic(poll, 1e6));
    out
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = rt.block_on(async {
        let d = Deployment::start(&meter::functions_dir()).await;
        let client = Client::new(&d.gateway.url);
        let mut world = set_up(&client, &d.gateway.url).await;
        let mut bench = Bench {
            d: &d,
            client,
            results: Vec::new(),
        };
        scenario(&mut bench, &mut world, 1, dir.path()).await;
        let first = std::mem::take(&mut bench.results);
        scenario(&mut bench, &mut world, 2, dir.path()).await;
        report(&bench.results, &first, &d.startup)
    });
    println!("{text}");
}
