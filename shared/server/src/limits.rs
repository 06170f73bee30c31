//! Rate limits: token buckets held in a [`RateLimitStore`], so every Lambda instance (and
//! the dev server) spends from the same bucket.
//!
//! Each bucket is kept as one number, its *theoretical arrival time* (GCRA, the generic
//! cell rate algorithm, which is a token bucket written as a time): a [`Rate`] of `n` per
//! `period` lets `n` requests through at once, then one every `period / n`. A request at
//! `now` goes through if the bucket's time, brought up to `now`, is at most
//! `now + (n - 1) · period / n`, and moves it on by `period / n`; otherwise it is refused
//! with the wait until it would go through. Unlike a fixed window, no boundary lets twice
//! the rate through: any span of time `t` lets at most `n + t · n / period` requests by.
//!
//! Every limit is configuration (see [`Rate::parse`] and docs/API.md, "Limits").

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::RateLimitStore;
use crate::{Error, Result};

/// `burst` requests at once, refilled evenly over `period`: "`burst` per `period`".
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many requests go through at once from a full bucket.
    pub burst: u32,
    /// How long the bucket takes to refill from empty.
    pub period: Duration,
}

impl Rate {
    /// `burst` per `period`.
    pub const fn per(burst: u32, period: Duration) -> Self {
        Self { burst, period }
    }

    /// The time one request's token takes to come back, in milliseconds (at least 1).
    pub fn interval_ms(self) -> u64 {
        let period = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        (period / u64::from(self.burst.max(1))).max(1)
    }

    /// How far ahead of `now` a bucket's time may stand and still let a request through.
    pub fn tolerance_ms(self) -> u64 {
        self.interval_ms()
            .saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }

    /// Reads `N/PERIOD`, where `PERIOD` is a count and a unit (`s`, `m`, `h`, `d`), as in
    /// `10/15m` (10 at once, one more every 90 s) or `600/1m`; `off` for no limit.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("`{text}` is not a rate: write N/PERIOD, like 10/15m, or off");
        let (burst, period) = text.split_once('/').ok_or_else(bad)?;
        let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let split = period.len().checked_sub(1).ok_or_else(bad)?;
        let (count, unit) = period.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad())?
        };
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let secs = count.checked_mul(unit).ok_or_else(bad)?;
        if burst == 0 || secs == 0 {
            return Err(format!("`{text}`: a rate needs at least 1 per at least 1s"));
        }
        Ok(Some(Self::per(burst, Duration::from_secs(secs))))
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.burst, self.period.as_secs())
    }
}

/// What a bucket decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Through; the bucket's new time (ms) is stored.
    Allow {
        /// The bucket's time after this request.
        tat: u64,
    },
    /// Refused; nothing is stored.
    Wait {
        /// Milliseconds until a request would go through.
        ms: u64,
    },
}

/// The rule every store applies, given the bucket's stored time (`None` for no bucket).
pub fn gcra(tat: Option<u64>, rate: Rate, now_ms: u64) -> Decision {
    let start = tat.unwrap_or(0).max(now_ms);
    let limit = now_ms.saturating_add(rate.tolerance_ms());
    if start > limit {
        Decision::Wait { ms: start - limit }
    } else {
        Decision::Allow {
            tat: start.saturating_add(rate.interval_ms()),
        }
    }
}

/// When a bucket whose time is `tat` (ms) is as good as absent, in seconds: the store may
/// forget it then (DynamoDB's TTL, SQLite's sweep).
pub fn forget_at(tat: u64) -> u64 {
    tat.div_ceil(1000) + 1
}

/// Where a request came from, as the platform saw it: API Gateway's `sourceIp` on Lambda,
/// the socket's peer in the dev server. Never a header the caller wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The part of the address one party holds: the whole IPv4 address, the /64 of an IPv6
    /// one (a single host is usually given a whole /64).
    pub fn bucket(self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

/// Extracts the request's [`ClientAddr`], which the entry point put in its extensions
/// (`None` where none did).
#[derive(Debug, Clone, Copy)]
pub struct SourceAddr(pub Option<ClientAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SourceAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ClientAddr>().copied()))
    }
}

/// Puts each request's [`ClientAddr`] in its extensions, from API Gateway's request
/// context (`requestContext.http.sourceIp`), for a router served by `lambda_http`.
#[cfg(feature = "lambda")]
pub fn with_source_addr(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            #[allow(irrefutable_let_patterns)]
            let addr = match request
                .extensions()
                .get::<lambda_http::request::RequestContext>()
            {
                Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx
                    .http
                    .source_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .map(ClientAddr),
                _ => None,
            };
            if let Some(addr) = addr {
                request.extensions_mut().insert(addr);
            }
            request
        },
    ))
}

/// The bucket name for a request whose address is unknown (a router driven without one,
/// as in tests): all such requests share it.
pub const UNKNOWN_ADDR: &str = "unknown";

/// The bucket name of an optional address.
pub fn addr_bucket(addr: Option<ClientAddr>) -> String {
    addr.map_or_else(|| UNKNOWN_ADDR.to_owned(), ClientAddr::bucket)
}

/// Every configurable limit: its name in `CINDER_LIMITS`, what it counts, its default.
pub const TABLE: &[(&str, &str, &str)] = &[
    (
        "login_per_address_and_login",
        "login and re-authentication starts per source address and login",
        "10/15m",
    ),
    (
        "login_per_address",
        "login and re-authentication starts per source address",
        "30/15m",
    ),
    (
        "login_per_login",
        "login and re-authentication starts per login, from all addresses",
        "100/1h",
    ),
    (
        "register_per_address",
        "registration starts per source address",
        "10/1h",
    ),
    (
        "key_publish_per_address",
        "first key bundles (new users) published per source address",
        "20/1h",
    ),
    ("key_rotate_per_user", "key rotations per user", "10/1h"),
    (
        "inbox_drop_per_sender",
        "invitations dropped per sending user",
        "600/1h",
    ),
    (
        "room_create_per_address",
        "rooms created per source address",
        "20/1h",
    ),
    (
        "reserve_per_capability",
        "message numbers held per channel (its capability)",
        "600/1m",
    ),
    (
        "post_per_capability",
        "messages posted per channel (its capability)",
        "600/1m",
    ),
    (
        "media_per_capability",
        "media upload and download URLs per channel, or per room for avatars (its capability)",
        "1200/1m",
    ),
    (
        "turn_per_capability",
        "TURN credentials per voice channel (its capability)",
        "120/1m",
    ),
];

/// The limits in force: [`TABLE`]'s defaults, with any overridden by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    rates: Vec<(&'static str, Option<Rate>)>,
}

impl Default for Limits {
    fn default() -> Self {
        let rates = TABLE
            .iter()
            .map(|&(name, _, default)| {
                let rate = Rate::parse(default).unwrap_or_else(|e| panic!("default {name}: {e}"));
                (name, rate)
            })
            .collect();
        Self { rates }
    }
}

impl Limits {
    /// Every limit off: for load benchmarks, which measure what the server does without
    /// the limits, and say so.
    pub fn off() -> Self {
        Self {
            rates: TABLE.iter().map(|&(name, _, _)| (name, None)).collect(),
        }
    }

    /// The defaults with overrides from `spec`: comma-separated `name=RATE` (see
    /// [`Rate::parse`]), such as `login_per_address=60/15m,register_per_address=off`. An
    /// unknown name or a bad rate is an error, not ignored: a typo must not leave a limit
    /// at a value its operator did not choose.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut limits = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: write name=RATE"))?;
            let rate = Rate::parse(rate).map_err(|e| format!("{}: {e}", name.trim()))?;
            let slot = limits
                .rates
                .iter_mut()
                .find(|(n, _)| *n == name.trim())
                .ok_or_else(|| {
                    format!(
                        "`{}` is not a limit (see docs/API.md, \"Limits\")",
                        name.trim()
                    )
                })?;
            slot.1 = rate;
        }
        Ok(limits)
    }

    /// The defaults with the overrides in the `CINDER_LIMITS` environment variable.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(&std::env::var("CINDER_LIMITS").unwrap_or_default())
            .map_err(|e| format!("CINDER_LIMITS: {e}"))
    }

    /// The rate of the limit `name` (`None`: off). Panics on a name not in [`TABLE`],
    /// which is a bug in the caller.
    pub fn rate(&self, name: &str) -> Option<Rate> {
        self.rates
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no limit named {name}"))
            .1
    }
}

/// Spends from named buckets in a shared store.
#[derive(Clone)]
pub struct Limiter {
    store: Arc<dyn RateLimitStore>,
    limits: Arc<Limits>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Limiter")
    }
}

impl Limiter {
    /// Buckets in `store`, at `limits`.
    pub fn new(store: Arc<dyn RateLimitStore>, limits: Limits) -> Self {
        Self {
            store,
            limits: Arc::new(limits),
        }
    }

    /// The store the buckets are in.
    pub fn store(&self) -> Arc<dyn RateLimitStore> {
        self.store.clone()
    }

    /// Spends one request from the bucket `name:who` of the limit `name` (nothing if it
    /// is off); refuses with [`Error::RateLimited`] and the whole seconds to wait.
    pub async fn check(&self, name: &str, who: &str, now_ms: u64) -> Result<()> {
        let Some(rate) = self.limits.rate(name) else {
            return Ok(());
        };
        let key = format!("{name}:{who}");
        match self.store.take(&key, rate, now_ms).await? {
            None => Ok(()),
            Some(wait_ms) => Err(Error::RateLimited {
                retry_after: wait_ms.div_ceil(1000).max(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: Rate, times: &[u64]) -> Vec<bool> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| match gcra(tat, rate, now) {
                Decision::Allow { tat: t } => {
                    tat = Some(t);
                    true
                }
                Decision::Wait { .. } => false,
            })
            .collect()
    }

    #[test]
    fn a_full_bucket_lets_its_burst_through_then_one_per_interval() {
        let rate = Rate::per(3, Duration::from_secs(3));
        // Three at once, the fourth refused, one more a second later.
        assert_eq!(
            run(rate, &[0, 0, 0, 0, 999, 1000, 1000]),
            [true, true, true, false, false, true, false]
        );
    }

    #[test]
    fn no_window_boundary_lets_twice_the_rate_through() {
        // The fixed window this replaces let 20 of a 10-per-15-minutes limit through in 4 s
        // across a boundary. A bucket lets 10 through, then the 11th only after 90 s.
        let rate = Rate::parse("10/15m").unwrap().unwrap();
        let times: Vec<u64> = (0..20).map(|i| 898_000 + i * 200).collect();
        let through = run(rate, &times).into_iter().filter(|&ok| ok).count();
        assert_eq!(through, 10);
    }

    #[test]
    fn the_wait_is_until_the_next_token() {
        let rate = Rate::per(2, Duration::from_secs(10));
        let Decision::Allow { tat } = gcra(None, rate, 1_000) else {
            panic!("a new bucket refused")
        };
        let Decision::Allow { tat } = gcra(Some(tat), rate, 1_000) else {
            panic!("the burst was refused")
        };
        assert_eq!(gcra(Some(tat), rate, 1_000), Decision::Wait { ms: 5_000 });
        assert!(matches!(
            gcra(Some(tat), rate, 6_000),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn rates_parse_from_configuration() {
        assert_eq!(
            Rate::parse("10/15m").unwrap(),
            Some(Rate::per(10, Duration::from_secs(900)))
        );
        assert_eq!(
            Rate::parse(" 600/m ").unwrap(),
            Some(Rate::per(600, Duration::from_secs(60)))
        );
        assert_eq!(Rate::parse("OFF").unwrap(), None);
        for bad in [
            "",
            "10",
            "10/",
            "/1m",
            "0/1m",
            "10/0s",
            "10/1w",
            "x/1m",
            "10/99999999999999999d",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn every_default_parses_and_overrides_are_checked() {
        let limits = Limits::default();
        for (name, _, _) in TABLE {
            assert!(limits.rate(name).is_some(), "{name} is off by default");
        }
        let changed = Limits::parse("post_per_capability=5/1s, turn_per_capability=off").unwrap();
        assert_eq!(
            changed.rate("post_per_capability"),
            Some(Rate::per(5, Duration::from_secs(1)))
        );
        assert_eq!(changed.rate("turn_per_capability"), None);
        assert_eq!(
            changed.rate("login_per_login"),
            limits.rate("login_per_login")
        );
        assert!(Limits::parse("posts=5/1s").is_err());
        assert!(Limits::parse("post_per_capability").is_err());
        assert!(Limits::parse("post_per_capability=fast").is_err());
        assert_eq!(Limits::parse(" , ").unwrap(), limits);
    }

    #[test]
    fn days_parse_and_off_turns_every_limit_off() {
        assert_eq!(
            Rate::parse("3/2d").unwrap(),
            Some(Rate::per(3, Duration::from_secs(172_800)))
        );
        let off = Limits::off();
        for (name, _, _) in TABLE {
            assert_eq!(off.rate(name), None, "{name}");
        }
    }

    #[test]
    fn a_bucket_is_kept_until_its_time_has_passed() {
        // The second after the bucket's time (rounded up), never before it.
        assert_eq!(forget_at(1), 2);
        assert_eq!(forget_at(1_000), 2);
        assert_eq!(forget_at(1_001), 3);
        assert_eq!(forget_at(1_800_000_000_500), 1_800_000_002);
    }

    #[test]
    fn an_unknown_address_has_one_bucket_and_a_known_one_its_own() {
        assert_eq!(addr_bucket(None), UNKNOWN_ADDR);
        let v4 = ClientAddr("192.0.2.1".parse().unwrap());
        assert_eq!(addr_bucket(Some(v4)), "192.0.2.1");
    }

    /// Buckets in memory, by the same rule every store applies.
    #[derive(Default)]
    struct Buckets(std::sync::Mutex<std::collections::HashMap<String, u64>>);

    #[async_trait::async_trait]
    impl RateLimitStore for Buckets {
        async fn take(
            &self,
            key: &str,
            rate: Rate,
            now_ms: u64,
        ) -> Result<Option<u64>, crate::StoreError> {
            let mut buckets = self.0.lock().unwrap();
            match gcra(buckets.get(key).copied(), rate, now_ms) {
                Decision::Allow { tat } => {
                    buckets.insert(key.to_owned(), tat);
                    Ok(None)
                }
                Decision::Wait { ms } => Ok(Some(ms)),
            }
        }
    }

    #[tokio::test]
    async fn the_limiter_refuses_past_the_burst_with_whole_seconds_to_wait() {
        let limits = Limits::parse("login_per_login=2/3s, register_per_address=off").unwrap();
        let limiter = Limiter::new(Arc::new(Buckets::default()), limits);
        limiter.check("login_per_login", "carol", 0).await.unwrap();
        limiter.check("login_per_login", "carol", 0).await.unwrap();
        // The next token is 1.5 s away: the answer rounds up, to 2.
        let refused = limiter.check("login_per_login", "carol", 0).await;
        assert!(
            matches!(refused, Err(Error::RateLimited { retry_after: 2 })),
            "{refused:?}"
        );
        // Another caller, and a limit that is off, are not refused.
        limiter.check("login_per_login", "dave", 0).await.unwrap();
        for _ in 0..10 {
            limiter
                .check("register_per_address", "carol", 0)
                .await
                .unwrap();
        }
        // A wait under a second is still one second.
        limiter
            .check("login_per_login", "carol", 1_500)
            .await
            .unwrap();
        limiter
            .check("login_per_login", "carol", 3_400)
            .await
            .unwrap();
        // The bucket's time is now 6,000 ms; at 4,000 it lets one through at 4,500.
        let refused = limiter.check("login_per_login", "carol", 4_000).await;
        assert!(
            matches!(refused, Err(Error::RateLimited { retry_after: 1 })),
            "{refused:?}"
        );
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
        let a = ClientAddr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = ClientAddr("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.bucket(), b.bucket());
        assert_ne!(a.bucket(), c.bucket());
        let mapped = ClientAddr("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped.bucket(), "192.0.2.7");
    }
}
