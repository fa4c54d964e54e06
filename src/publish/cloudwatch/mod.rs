//! The CloudWatch output, in two rooms: `encode` turns windows into
//! `MetricDatum`s and keeps each request within the `PutMetricData` budget (pure, shared
//! with the dry-run preview and the send queue); `client` sends requests
//! through the AWS SDK for Rust and says what each error CloudWatch answers means for the
//! data.

mod client;
mod encode;

pub use crate::domain::{Encoding, rfc3339};
pub use client::{
    CloudWatch, ConnectError, ErrorKind, PublishError, Publisher, classify, endpoint, sdk_config,
};
pub use encode::{
    Datum, MAX_DATUMS_PER_REQUEST, MAX_REQUEST_BYTES, PutRequest, describe, encode, encoded_size,
    request_len, request_overhead,
};
