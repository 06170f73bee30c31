//! `make watch`'s set-up: the stack's tables (the live and relays tables too) and media
//! bucket on a local AWS stand-in (moto), named as `deploy/env.local.json` names them. (The
//! master and TURN secrets come in the functions' environment, from that file.)
//!
//! The tables come from `cinder_aws::schema`, the one description of them outside
//! `template.yaml`, so this creates exactly what the tests create. Safe to run again: what
//! already exists is left as it is (a second run keeps moto's data).
//!
//! Usage: `local-aws [ENDPOINT] [PREFIX]` (default `http://127.0.0.1:5050` and `local-`).

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use cinder_aws::accounts::AccountTables;
use cinder_aws::media::S3Objects;
use cinder_aws::rooms::RoomTables;
use cinder_aws::{Tables, schema};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5050".to_owned());
    let prefix = args.next().unwrap_or_else(|| "local-".to_owned());
    // moto checks no credentials, but the SDK wants some.
    let credentials = Credentials::new("local", "local", None, None, "local-aws");

    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(credentials)
            .build(),
    );
    let keys = Tables::prefixed(&prefix);
    let accounts = AccountTables::prefixed(&prefix);
    let rooms = RoomTables::prefixed(&prefix);
    // The live function's subscriptions (LIVE_TABLE) and the calls function's relays
    // (RELAYS_TABLE).
    let live = format!("{prefix}live");
    let relays = format!("{prefix}relays");
    let existing = dynamo
        .list_tables()
        .send()
        .await?
        .table_names
        .unwrap_or_default();
    for (name, spec) in [
        (&keys.keys, schema::KEYS),
        (&keys.inbox, schema::INBOX),
        (&keys.nonces, schema::NONCES),
        (&accounts.accounts, schema::ACCOUNTS),
        (&accounts.rate_limits, schema::RATE_LIMITS),
        (&rooms.rooms, schema::ROOMS),
        (&rooms.spines, schema::SPINES),
        (&rooms.shards, schema::SHARDS),
        (&live, schema::LIVE),
        (&relays, schema::RELAYS),
    ] {
        if existing.contains(name) {
            println!("table  {name} (exists)");
        } else {
            schema::create(&dynamo, name, spec).await?;
            println!("table  {name}");
        }
    }

    let bucket = format!("{prefix}media");
    let s3 = S3Objects::on_endpoint(&endpoint, bucket.clone())?;
    if s3
        .client()
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .is_ok()
    {
        println!("bucket {bucket} (exists)");
    } else {
        s3.client().create_bucket().bucket(&bucket).send().await?;
        println!("bucket {bucket}");
    }

    Ok(())
}
