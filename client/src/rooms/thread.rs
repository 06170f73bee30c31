//! What a reader shows of a channel: its verified messages folded into texts with their
//! latest edits, replies and reactions.
//!
//! [`thread`] is pure: it takes messages that passed every check of
//! [`super::messages`] (so each sender is verified) and decides only how they combine. The
//! rules, the same in every client:
//!
//! - A text (a reply too) shows in its place; a kind this client does not know shows as a
//!   placeholder. Call signals are left to [`crate::call::CallRoster`].
//! - An edit replaces a text's words only if its sender wrote that text: an edit of anyone
//!   else's message is refused ([`Refusal::ForgedEdit`]) and changes nothing. Of several
//!   edits, the one with the highest number wins (numbers are signed and only go up, unlike
//!   the senders' clocks). An edit of a message not on hand (burnt, deleted, not loaded),
//!   of a message that is not a text, or numbered before the message it edits, is ignored.
//! - A reaction counts once per user and emoji; a later `remove` by the same user takes
//!   theirs back. Reactions to a message not shown are kept apart
//!   ([`Thread::elsewhere`]), so they still show.
//! - A reply names its message and says whether that one is shown.

use std::collections::BTreeMap;

use cinder_proto::{Timestamp, UserId};

use super::messages::{Content, Received, Refusal};
use crate::media::Attachment;

/// A channel as a reader shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thread {
    /// The texts and placeholders, by number.
    pub messages: Vec<Shown>,
    /// Reactions to messages that are not shown (burnt, deleted, not loaded), by number.
    pub elsewhere: BTreeMap<u64, Vec<Reactions>>,
    /// Messages refused while folding (an edit of someone else's message), and why.
    pub refused: Vec<(u64, Refusal)>,
}

impl Thread {
    /// The shown message numbered `number`.
    pub fn get(&self, number: u64) -> Option<&Shown> {
        self.messages
            .binary_search_by_key(&number, |s| s.number)
            .ok()
            .map(|i| &self.messages[i])
    }
}

/// One message as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Its number.
    pub number: u64,
    /// Its verified sender.
    pub sender: UserId,
    /// The sender's name in the room state.
    pub sender_name: Option<String>,
    /// When it was sent (the sender's clock).
    pub sent_at: Timestamp,
    /// When it burns.
    pub burn_at: Timestamp,
    /// What to show.
    pub view: View,
    /// Its reactions, each emoji once, in the order first used.
    pub reactions: Vec<Reactions>,
}

/// What a shown message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum View {
    /// A text, as last edited by its sender.
    Text {
        /// The words (the newest edit's, if edited).
        text: String,
        /// The number of the edit shown, if edited.
        edited: Option<u64>,
        /// The message it answers.
        reply_to: Option<ReplyTo>,
        /// Its files.
        attachments: Vec<Attachment>,
    },
    /// A kind this client does not show: a placeholder.
    Unknown {
        /// The kind it names.
        kind: String,
    },
}

/// The message a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// Its number.
    pub number: u64,
    /// Whether it is shown in this thread (otherwise: burnt, deleted, or not loaded).
    pub shown: bool,
}

/// One emoji on a message, and who reacted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    /// The emoji.
    pub emoji: String,
    /// Who, in the order they reacted, each once, with their names in the room state.
    pub by: Vec<(UserId, Option<String>)>,
}

/// Folds a channel's verified messages (any order; each number once) into what a reader
/// shows: see the module's introduction for the rules.
pub fn thread(messages: &[Received]) -> Thread {
    let mut order: Vec<&Received> = messages.iter().collect();
    order.sort_by_key(|r| r.number);
    let mut out = Thread::default();
    for r in &order {
        let view = match &r.content {
            Content::Text {
                text,
                reply_to,
                attachments,
            } => View::Text {
                text: text.clone(),
                edited: None,
                reply_to: reply_to.map(|number| ReplyTo {
                    number,
                    shown: false,
                }),
                attachments: attachments.clone(),
            },
            Content::Unknown { kind } => View::Unknown { kind: kind.clone() },
            _ => continue,
        };
        out.messages.push(Shown {
            number: r.number,
            sender: r.sender,
            sender_name: r.sender_name.clone(),
            sent_at: r.sent_at,
            burn_at: r.burn_at,
            view,
            reactions: Vec::new(),
        });
    }
    // Which numbers a reply can point at.
    let shown: std::collections::BTreeSet<u64> = out.messages.iter().map(|s| s.number).collect();
    for s in &mut out.messages {
        if let View::Text {
            reply_to: Some(reply),
            ..
        } = &mut s.view
        {
            reply.shown = shown.contains(&reply.number);
        }
    }
    // Who wrote each number on hand (any kind), for edits.
    let author: BTreeMap<u64, UserId> = order.iter().map(|r| (r.number, r.sender)).collect();
    // Per target and emoji, who has a reaction on it now.
    let mut reactions: BTreeMap<u64, Vec<Reactions>> = BTreeMap::new();
    for r in &order {
        match &r.content {
            Content::Edit { of, text } => match author.get(of) {
                None => {}
                Some(writer) if *writer != r.sender => {
                    out.refused.push((r.number, Refusal::ForgedEdit));
                }
                Some(_) if r.number <= *of => {}
                Some(_) => {
                    let at = out.messages.binary_search_by_key(of, |s| s.number);
                    if let Ok(i) = at
                        && let View::Text {
                            text: shown_text,
                            edited,
                            ..
                        } = &mut out.messages[i].view
                    {
                        // In number order, so the last applied is the newest.
                        text.clone_into(shown_text);
                        *edited = Some(r.number);
                    }
                }
            },
            Content::Reaction { to, emoji, remove } => {
                let on = reactions.entry(*to).or_default();
                let at = on.iter().position(|x| &x.emoji == emoji);
                match (at, remove) {
                    (Some(i), true) => on[i].by.retain(|(u, _)| *u != r.sender),
                    (None, true) => {}
                    (Some(i), false) => {
                        if !on[i].by.iter().any(|(u, _)| *u == r.sender) {
                            on[i].by.push((r.sender, r.sender_name.clone()));
                        }
                    }
                    (None, false) => on.push(Reactions {
                        emoji: emoji.clone(),
                        by: vec![(r.sender, r.sender_name.clone())],
                    }),
                }
            }
            _ => {}
        }
    }
    for (to, mut list) in reactions {
        list.retain(|x| !x.by.is_empty());
        if list.is_empty() {
            continue;
        }
        match out.messages.binary_search_by_key(&to, |s| s.number) {
            Ok(i) => out.messages[i].reactions = list,
            Err(_) => {
                out.elsewhere.insert(to, list);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cinder_proto::Blob;

    use super::*;
    use crate::call::{CallSession, CallSignal};

    const ALICE: UserId = UserId([1; 16]);
    const BOB: UserId = UserId([2; 16]);
    const CAROL: UserId = UserId([3; 16]);

    fn name(u: UserId) -> Option<String> {
        Some(
            match u {
                ALICE => "alice",
                BOB => "bob",
                _ => "carol",
            }
            .into(),
        )
    }

    fn msg(number: u64, sender: UserId, content: Content) -> Received {
        Received {
            number,
            sender,
            sender_name: name(sender),
            sent_at: Timestamp(1000 + number),
            burn_at: Timestamp(5000),
            content,
            seq: number,
            hash: Blob(vec![0; 32]),
            prev: Blob(vec![0; 32]),
        }
    }

    fn edit(of: u64, text: &str) -> Content {
        Content::Edit {
            of,
            text: text.into(),
        }
    }

    fn react(to: u64, emoji: &str, remove: bool) -> Content {
        Content::Reaction {
            to,
            emoji: emoji.into(),
            remove,
        }
    }

    fn text_of(t: &Thread, number: u64) -> (String, Option<u64>) {
        match &t.get(number).unwrap().view {
            View::Text { text, edited, .. } => (text.clone(), *edited),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_edit_by_someone_else_is_refused_and_the_text_stays() {
        // GIVEN Bob "edits" Alice's message
        let t = thread(&[
            msg(1, ALICE, Content::text("meet at noon")),
            msg(2, BOB, edit(1, "meet at midnight")),
        ]);
        // THEN it is refused, and Alice's words stay, unmarked
        assert_eq!(t.refused, vec![(2, Refusal::ForgedEdit)]);
        assert_eq!(text_of(&t, 1), ("meet at noon".into(), None));
        assert_eq!(t.messages.len(), 1);
    }

    #[test]
    fn the_authors_newest_edit_shows_marked_edited() {
        // Given out of order, as a page merge might: numbers decide, not the slice's order.
        let t = thread(&[
            msg(4, ALICE, edit(1, "second try")),
            msg(1, ALICE, Content::text("frist")),
            msg(2, ALICE, edit(1, "first")),
            msg(3, BOB, Content::text("typo?")),
        ]);
        assert_eq!(t.refused, vec![]);
        assert_eq!(text_of(&t, 1), ("second try".into(), Some(4)));
        assert_eq!(text_of(&t, 3), ("typo?".into(), None));
    }

    #[test]
    fn edits_of_messages_not_on_hand_or_not_texts_are_ignored() {
        let join = Content::Call {
            signal: CallSignal::Join {
                session: CallSession([1; 16]),
            },
        };
        let t = thread(&[
            msg(2, ALICE, join),
            msg(3, ALICE, edit(1, "burnt already")),
            msg(4, ALICE, edit(2, "not a text")),
            msg(5, ALICE, Content::text("later")),
            msg(6, ALICE, edit(9, "from the future")),
            msg(9, ALICE, Content::text("nine")),
        ]);
        assert_eq!(t.refused, vec![]);
        let numbers: Vec<_> = t.messages.iter().map(|s| s.number).collect();
        assert_eq!(numbers, vec![5, 9]);
        assert_eq!(text_of(&t, 9), ("nine".into(), None));
    }

    #[test]
    fn replies_and_reactions_show_in_place_even_for_unknown_numbers() {
        let reply = |to: u64, text: &str| Content::Text {
            text: text.into(),
            reply_to: Some(to),
            attachments: Vec::new(),
        };
        let t = thread(&[
            msg(3, ALICE, Content::text("lunch?")),
            msg(4, BOB, reply(3, "yes")),
            msg(5, CAROL, reply(1, "about the old thing")),
            msg(6, BOB, react(3, "👍", false)),
            msg(7, CAROL, react(3, "👍", false)),
            msg(8, CAROL, react(3, "👍", false)),
            msg(9, ALICE, react(3, "🎉", false)),
            msg(10, ALICE, react(3, "🎉", true)),
            msg(11, BOB, react(2, "👀", false)),
            msg(12, BOB, react(3, "🎉", true)),
        ]);
        let replied = |n| match &t.get(n).unwrap().view {
            View::Text { reply_to, .. } => *reply_to,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            replied(4),
            Some(ReplyTo {
                number: 3,
                shown: true
            })
        );
        assert_eq!(
            replied(5),
            Some(ReplyTo {
                number: 1,
                shown: false
            })
        );
        // One per user per emoji; a removal takes back only the remover's own.
        assert_eq!(
            t.get(3).unwrap().reactions,
            vec![Reactions {
                emoji: "👍".into(),
                by: vec![(BOB, name(BOB)), (CAROL, name(CAROL))]
            }]
        );
        assert_eq!(
            t.elsewhere[&2],
            vec![Reactions {
                emoji: "👀".into(),
                by: vec![(BOB, name(BOB))]
            }]
        );
    }

    #[test]
    fn an_unknown_kind_is_a_placeholder_and_call_signals_are_left_out() {
        let t = thread(&[
            msg(
                1,
                ALICE,
                Content::Unknown {
                    kind: "poll".into(),
                },
            ),
            msg(
                2,
                ALICE,
                Content::Call {
                    signal: CallSignal::Leave {
                        session: CallSession([1; 16]),
                    },
                },
            ),
            msg(3, BOB, react(1, "🗳", false)),
        ]);
        assert_eq!(t.messages.len(), 1);
        assert_eq!(
            t.messages[0].view,
            View::Unknown {
                kind: "poll".into()
            }
        );
        assert_eq!(t.messages[0].reactions.len(), 1);
    }
}
