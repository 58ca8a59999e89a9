//! Redis adapters: `HotState`, `RankStore` (single node or Redis Cluster) and the Streams `Bus`.

pub mod bus;
pub mod conn;
pub mod hot;
pub mod rank;

pub use conn::{RedisConn, RedisHandle};
pub use hot::RedisHotState;
pub use rank::RedisRankStore;
