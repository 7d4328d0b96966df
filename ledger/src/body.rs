//! Request bodies, read only when a handler asks: a handler authenticates first and reads the
//! body after, so an unauthenticated caller cannot make a service read (or buffer) anything.
//! Reading checks the media type, the announced length against the route's limit before a
//! byte is read, the real length while reading, and a deadline for the whole body.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;
use warp::http::HeaderMap;
use warp::Filter;

/// Why a request body could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// No `Content-Length` (411).
    #[error("Content-Length is required")]
    LengthRequired,
    /// Over the route's limit (413).
    #[error("the body is {size} bytes; this route accepts at most {limit}")]
    TooLarge {
        /// Announced or received size.
        size: u64,
        /// The route's limit.
        limit: u64,
    },
    /// Not `application/json` where JSON is expected (415).
    #[error("Content-Type must be application/json, not {0:?}")]
    NotJson(String),
    /// The body did not arrive within the deadline (408).
    #[error("the request body did not arrive within {0} ms")]
    TooSlow(u64),
    /// The body could not be read (400).
    #[error("the request body could not be read")]
    Unreadable,
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// A request body not read yet.
pub struct PendingBody {
    stream: BodyStream,
    content_length: Option<u64>,
    content_type: Option<String>,
    chunked: bool,
}

/// The request's body, unread, with the headers that describe it.
pub fn pending_body() -> impl Filter<Extract = (PendingBody,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .map(|headers: HeaderMap, stream| PendingBody::new(&headers, boxed(stream)))
        .or(warp::any().map(PendingBody::empty))
        .unify()
}

fn boxed<S, B>(stream: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(stream.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining()))))
}

impl PendingBody {
    fn new(headers: &HeaderMap, stream: BodyStream) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            stream,
            content_length: header("content-length").and_then(|v| v.trim().parse().ok()),
            content_type: header("content-type").map(str::to_string),
            chunked: header("transfer-encoding").is_some(),
        }
    }

    fn empty() -> Self {
        Self {
            stream: Box::pin(futures_util::stream::empty()),
            content_length: None,
            content_type: None,
            chunked: false,
        }
    }

    /// Whether the request carries no body at all (neither a `Content-Length` nor a
    /// `Transfer-Encoding`), as a bare `curl -X POST` sends.
    pub fn is_absent(&self) -> bool {
        self.content_length.is_none() && !self.chunked
    }

    /// The body as JSON bytes: `Content-Type: application/json` (parameters such as
    /// `charset=utf-8` allowed), at most `limit` bytes, all within `deadline`.
    pub async fn json(self, limit: u64, deadline: Duration) -> Result<Bytes, BodyError> {
        let is_json = self.content_type.as_deref().is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !is_json {
            return Err(BodyError::NotJson(
                self.content_type.clone().unwrap_or_else(|| "none".into()),
            ));
        }
        self.bytes(limit, deadline).await
    }

    /// The body, at most `limit` bytes, all within `deadline`; a `Content-Length` is required
    /// and checked before anything is read.
    pub async fn bytes(mut self, limit: u64, deadline: Duration) -> Result<Bytes, BodyError> {
        let announced = self.content_length.ok_or(BodyError::LengthRequired)?;
        if announced > limit {
            return Err(BodyError::TooLarge {
                size: announced,
                limit,
            });
        }
        let read = async {
            let mut out = BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
            while let Some(chunk) = self.stream.next().await {
                let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
                let size = (out.len() + chunk.len()) as u64;
                if size > limit {
                    return Err(BodyError::TooLarge { size, limit });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out.freeze())
        };
        match tokio::time::timeout(deadline, read).await {
            Ok(result) => result,
            Err(_) => Err(BodyError::TooSlow(
                u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }
}
