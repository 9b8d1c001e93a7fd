//! Infrastructure a run needs besides the server under test: private backend servers that
//! leakrun starts for one run and always stops after it. Each runs as a
//! [`crate::process::ChildProcess`], so none outlives leakrun on any path.

pub mod rabbitmq_server;
pub mod redis_server;

pub use rabbitmq_server::{PrivateRabbitMq, RabbitMqServerError};
pub use redis_server::{PrivateRedis, RedisServerError};
