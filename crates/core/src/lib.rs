//! LiveOps core: domain types, validation, signing, receipts, windows, scoring, the port traits
//! and the per-service store traits. No I/O: everything here is pure and testable without servers.

pub mod draw;
pub mod event;
pub mod event_schema;
pub mod ports;
pub mod scoring;
pub mod sealing;
pub mod signing;
pub mod stores;
mod throttle;
pub mod time;
mod turns;
pub mod window;

pub use event::{Envelope, Event, EventType, InvalidEvent, Limits, Payload, PlayerId};
pub use ports::{Board, Bus, BusExt, Health, PortError, PortResult, RankEntry, RankStore};
pub use scoring::{LevelCurve, Welford};
pub use signing::{
    AuthError, CheckedHeaders, KeyStore, Keyring, Receipt, Scheme, SignedRequest, Verification,
};
pub use throttle::Throttled;
pub use turns::Turns;
pub use window::{utc_ms, Calendar, Period, Window};

/// Implements `Debug` for a struct showing only the fields named, so secrets stay out of logs:
/// `debug_fields!(Webhook { id, url })`; a trailing `..` marks that fields were left out
/// (`finish_non_exhaustive`).
#[macro_export]
macro_rules! debug_fields {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        $crate::debug_fields!(@impl $ty, finish, $($field),+);
    };
    ($ty:ident { $($field:ident,)* .. }) => {
        $crate::debug_fields!(@impl $ty, finish_non_exhaustive, $($field),*);
    };
    (@impl $ty:ident, $finish:ident, $($field:ident),*) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .$finish()
            }
        }
    };
}

/// Current server time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    struct Account {
        id: u32,
        password: &'static str,
    }
    crate::debug_fields!(Account { id });

    struct Replica {
        lag_ms: u64,
        url: &'static str,
    }
    crate::debug_fields!(Replica { lag_ms, .. });

    #[test]
    fn debug_fields_prints_only_the_fields_named() {
        let account = Account {
            id: 7,
            password: "hunter2",
        };
        let shown = format!("{account:?}");
        assert_eq!(shown, "Account { id: 7 }");
        assert!(!shown.contains(account.password));
        let replica = Replica {
            lag_ms: 5,
            url: "postgres://u:p@h/db",
        };
        assert_eq!(format!("{replica:?}"), "Replica { lag_ms: 5, .. }");
        assert!(!replica.url.is_empty());
    }
}
