//! Infrastructure a run needs besides the server under test: private backend processes that
//! leakrun starts for one run and always stops after it.

pub mod redis_server;

pub use redis_server::{PrivateRedis, RedisServerError};
