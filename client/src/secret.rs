//! Secrets serialise only where this crate writes them on purpose: the profile file, the
//! enclave before it is sealed, an invitation before it is HPKE-sealed. Anywhere else (an
//! app logging a membership, say, or sending an identity to its own server) serialising a
//! secret fails, so keys cannot leak through a stray `serde_json::to_string`.

use std::cell::Cell;

thread_local! {
    static EXPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `write` with secrets serialisable on this thread (the crate's own storage paths).
pub(crate) fn exposing<T>(write: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXPOSED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXPOSED.with(|e| e.replace(true)));
    write()
}

/// Refuses to serialise a secret outside [`exposing`].
pub(crate) fn guard<E: serde::ser::Error>() -> Result<(), E> {
    if EXPOSED.with(Cell::get) {
        Ok(())
    } else {
        Err(E::custom(
            "secrets serialise only into cinder-client's own profile, enclave and invitations",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use cinder_proto::Timestamp;

    #[test]
    fn secrets_do_not_serialise_by_accident() {
        let me = Identity::generate(Timestamp(1)).unwrap();
        let err = serde_json::to_string(&me).unwrap_err();
        assert!(err.to_string().contains("secrets serialise only"), "{err}");
        // The crate's own paths still can, and the guard is lifted only while they run.
        let json = exposing(|| serde_json::to_string(&me)).unwrap();
        assert!(json.contains("seeds"));
        assert!(serde_json::to_string(&me).is_err());
        // A panic inside does not leave secrets exposed.
        let _ = std::panic::catch_unwind(|| exposing(|| panic!("boom")));
        assert!(serde_json::to_string(&me).is_err());
    }
}
