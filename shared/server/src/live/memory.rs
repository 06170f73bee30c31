//! Subscriptions in memory: for a process that holds its sockets itself (the dev server),
//! where a subscription cannot outlive its connection anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cinder_proto::Timestamp;

use crate::store::{ChannelRef, LiveStore, StoreError, Subscription};

/// Subscriptions by channel, then connection.
#[derive(Debug, Default)]
pub struct MemoryLive {
    by_channel: Mutex<HashMap<ChannelRef, HashMap<String, Subscription>>>,
}

impl MemoryLive {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<ChannelRef, HashMap<String, Subscription>>) -> T,
    ) -> T {
        // A panic while holding the lock leaves whole entries, never half-written ones.
        let mut guard = self.by_channel.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[async_trait]
impl LiveStore for MemoryLive {
    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.with(|m| {
            m.entry(subscription.channel)
                .or_default()
                .insert(subscription.connection.clone(), subscription.clone());
        });
        Ok(())
    }

    async fn unsubscribe(
        &self,
        connection: &str,
        channel: &ChannelRef,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|m| {
            let Some(subs) = m.get_mut(channel) else {
                return false;
            };
            let gone = subs.remove(connection).is_some();
            if subs.is_empty() {
                m.remove(channel);
            }
            gone
        }))
    }

    async fn subscriptions_of(
        &self,
        connection: &str,
        now: Timestamp,
    ) -> Result<Vec<ChannelRef>, StoreError> {
        Ok(self.with(|m| {
            m.iter()
                .filter(|(_, subs)| subs.get(connection).is_some_and(|s| s.expires_at > now))
                .map(|(c, _)| *c)
                .collect()
        }))
    }

    async fn subscribers(
        &self,
        channel: &ChannelRef,
        now: Timestamp,
    ) -> Result<Vec<Subscription>, StoreError> {
        Ok(self.with(|m| {
            m.get(channel)
                .map(|subs| {
                    subs.values()
                        .filter(|s| s.expires_at > now)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    async fn disconnect(&self, connection: &str) -> Result<(), StoreError> {
        self.with(|m| {
            m.retain(|_, subs| {
                subs.remove(connection);
                !subs.is_empty()
            });
        });
        Ok(())
    }
}
