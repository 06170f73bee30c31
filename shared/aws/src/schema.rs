//! Each table's key schema, TTL attribute and stream, matching `template.yaml`.
//!
//! The Lambdas never create tables (CloudFormation does); test harnesses and local tools
//! do, through [`create_tables`], so the schema is written down once on this side.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};

use crate::Tables;

/// One table's shape.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Partition key attribute and type.
    pub partition: (&'static str, ScalarAttributeTypeName),
    /// Sort key attribute and type, if any.
    pub sort: Option<(&'static str, ScalarAttributeTypeName)>,
    /// The TTL attribute, if items expire.
    pub ttl: Option<&'static str>,
    /// Whether the table has a stream of new and old images (the shards table's feeds the
    /// burn function).
    pub stream: bool,
}

/// A key attribute's type.
#[derive(Debug, Clone, Copy)]
pub enum ScalarAttributeTypeName {
    /// String.
    S,
    /// Number.
    N,
}

/// The key directory's table.
pub const KEYS: TableSpec = TableSpec {
    partition: ("user_id", ScalarAttributeTypeName::S),
    sort: Some(("version", ScalarAttributeTypeName::N)),
    ttl: None,
    stream: false,
};
/// The invite inboxes' table.
pub const INBOX: TableSpec = TableSpec {
    partition: ("owner", ScalarAttributeTypeName::S),
    sort: Some(("id", ScalarAttributeTypeName::S)),
    ttl: Some("expires_at"),
    stream: false,
};
/// The spent nonces' table.
pub const NONCES: TableSpec = TableSpec {
    partition: ("id", ScalarAttributeTypeName::S),
    sort: None,
    ttl: Some("expires_at"),
    stream: false,
};

/// The accounts table.
pub const ACCOUNTS: TableSpec = TableSpec {
    partition: ("login", ScalarAttributeTypeName::S),
    sort: None,
    ttl: None,
    stream: false,
};
/// The rate-limit counters' table.
pub const RATE_LIMITS: TableSpec = TableSpec {
    partition: ("id", ScalarAttributeTypeName::S),
    sort: None,
    ttl: Some("expires_at"),
    stream: false,
};

/// The rooms table.
pub const ROOMS: TableSpec = TableSpec {
    partition: ("room_id", ScalarAttributeTypeName::S),
    sort: None,
    ttl: None,
    stream: false,
};
/// The spine log: every version of every room's sealed spine.
pub const SPINES: TableSpec = TableSpec {
    partition: ("room_id", ScalarAttributeTypeName::S),
    sort: Some(("version", ScalarAttributeTypeName::N)),
    ttl: None,
    stream: false,
};
/// The shards table: partition `room/channel`, sort message number; number 0 is the counter.
pub const SHARDS: TableSpec = TableSpec {
    partition: ("channel", ScalarAttributeTypeName::S),
    sort: Some(("number", ScalarAttributeTypeName::N)),
    ttl: Some("burn_at"),
    stream: true,
};

/// The live table: who follows which channel. Partition `room/channel` (or `conn/{id}` for a
/// connection's own item, listing its channels), sort the connection id; TTL `expires_at`.
pub const LIVE: TableSpec = TableSpec {
    partition: ("channel", ScalarAttributeTypeName::S),
    sort: Some(("connection", ScalarAttributeTypeName::S)),
    ttl: Some("expires_at"),
    stream: false,
};

/// The relays table: each TURN relay's latest announcement, by relay id; TTL `expires_at`.
pub const RELAYS: TableSpec = TableSpec {
    partition: ("relay_id", ScalarAttributeTypeName::S),
    sort: None,
    ttl: Some("expires_at"),
    stream: false,
};

/// Creates one table (on-demand billing, with its stream where the spec has one) and
/// switches TTL on where the spec has it.
pub async fn create(
    client: &Client,
    name: &str,
    spec: TableSpec,
) -> Result<(), aws_sdk_dynamodb::Error> {
    create_table(client, name, spec).await
}

/// Creates every table (on-demand billing) and switches TTL on where the spec has it.
pub async fn create_tables(
    client: &Client,
    tables: &Tables,
) -> Result<(), aws_sdk_dynamodb::Error> {
    for (name, spec) in [
        (&tables.keys, KEYS),
        (&tables.inbox, INBOX),
        (&tables.nonces, NONCES),
        (&tables.rate_limits, RATE_LIMITS),
    ] {
        create_table(client, name, spec).await?;
    }
    Ok(())
}

async fn create_table(
    client: &Client,
    name: &str,
    spec: TableSpec,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let attr_type = |t| match t {
        ScalarAttributeTypeName::S => ScalarAttributeType::S,
        ScalarAttributeTypeName::N => ScalarAttributeType::N,
    };
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    let keys = std::iter::once((spec.partition, KeyType::Hash))
        .chain(spec.sort.map(|s| (s, KeyType::Range)));
    for ((attr, ty), key_type) in keys {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(attr_type(ty))
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(key_type)
                    .build()?,
            );
    }
    if spec.stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        );
    }
    req.send().await?;
    if let Some(ttl) = spec.ttl {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(ttl)
                    .build()?,
            )
            .send()
            .await?;
    }
    Ok(())
}
