//! What every API listener enforces before a request reaches a route: a cap on open
//! connections, a deadline per request, and a table of the service's routes so that an
//! unknown path is 404, a known path with another method is 405 with `Allow`, `HEAD` is
//! served wherever `GET` is, and header values the API reads must be visible ASCII — all as
//! JSON errors, counted in `vaultmesh_http_rejections_total{reason}`.

use crate::service::json_error;
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use warp::http::{HeaderValue, Method, Request, StatusCode};
use warp::reply::Response;

/// Connection and request limits of a listener.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HttpLimits {
    /// Most open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Longest time to receive a request's headers.
    #[serde(serialize_with = "millis")]
    pub header_read_timeout: Duration,
    /// Longest time for a whole request.
    #[serde(serialize_with = "millis")]
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `vaultmesh_http_rejections_total{reason}`: requests and connections refused before any
/// route ran (connection cap, deadline, unknown route, wrong method, bad header bytes).
pub static HTTP_REJECTIONS: std::sync::LazyLock<prometheus::IntCounterVec> =
    std::sync::LazyLock::new(|| {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "vaultmesh_http_rejections_total",
                "Requests and connections refused before reaching a route, by reason",
            ),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable!())
    });

/// Header values the APIs read; a byte outside visible ASCII (and space, tab) in any of them
/// is a 400, the same on every method.
const READ_HEADERS: [&str; 5] = [
    "authorization",
    "idempotency-key",
    "content-type",
    "accept",
    "if-none-match",
];

/// The routes a listener serves: (method, path template with `{name}` segments).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(Method, Vec<Segment>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param,
}

/// How `a` ranks against `b` (same length): a literal segment beats a parameter, compared
/// from the left.
fn specificity(a: &[Segment], b: &[Segment]) -> std::cmp::Ordering {
    let literal = |s: &Segment| matches!(s, Segment::Literal(_));
    a.iter().map(literal).cmp(b.iter().map(literal))
}

/// What the route table says of a request.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Serve it (for `HEAD`, as `GET`).
    Serve { as_get: bool },
    /// No route has this path.
    NotFound,
    /// The path exists with these methods only.
    NotAllowed(String),
}

impl RouteTable {
    /// A table from (method, template) pairs, e.g. `("GET", "/v1/scrolls/{scroll}")`.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let routes = routes
            .into_iter()
            .filter_map(|(method, template)| {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?;
                let segments = template
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect();
                Some((method, segments))
            })
            .collect();
        Self { routes }
    }

    /// This table plus more routes.
    pub fn with<'a>(mut self, routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.routes.extend(Self::new(routes).routes);
        self
    }

    /// The methods of the most specific templates matching `path`: as in OpenAPI path
    /// matching, a literal segment beats a `{param}` (compared from the left), so
    /// `/receipts/batch` is not also `/receipts/{seq}`.
    fn methods_for(&self, path: &str) -> Vec<&Method> {
        let path = path.trim_start_matches('/');
        let count = path.split('/').count();
        let mut best: Option<&[Segment]> = None;
        let mut out: Vec<&Method> = Vec::new();
        for (method, segments) in &self.routes {
            let matches = segments.len() == count
                && segments
                    .iter()
                    .zip(path.split('/'))
                    .all(|(seg, part)| match seg {
                        Segment::Literal(l) => l == part,
                        Segment::Param => !part.is_empty(),
                    });
            if !matches {
                continue;
            }
            match best.map(|b| specificity(segments, b)) {
                Some(std::cmp::Ordering::Less) => continue,
                Some(std::cmp::Ordering::Equal) => {}
                _ => {
                    best = Some(segments);
                    out.clear();
                }
            }
            if !out.contains(&method) {
                out.push(method);
            }
        }
        out
    }

    fn verdict(&self, method: &Method, path: &str) -> Verdict {
        let methods = self.methods_for(path);
        if methods.is_empty() {
            return Verdict::NotFound;
        }
        if methods.contains(&method) {
            return Verdict::Serve { as_get: false };
        }
        if method == Method::HEAD && methods.contains(&&Method::GET) {
            return Verdict::Serve { as_get: true };
        }
        let mut allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        allow.sort_unstable();
        Verdict::NotAllowed(allow.join(", "))
    }
}

/// A response refused before routing, counted under `reason`.
fn refused(status: StatusCode, reason: &str, code: &str, message: &str) -> Response {
    HTTP_REJECTIONS.with_label_values(&[reason]).inc();
    json_error(status, code, message)
}

/// The 503 a connection over the cap gets before it is closed (raw HTTP/1.1, since no
/// connection is served for it).
pub fn over_capacity_response() -> Vec<u8> {
    HTTP_REJECTIONS.with_label_values(&["connection_cap"]).inc();
    let body = r#"{"error":{"code":"too_many_connections","message":"the server has too many open connections; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A tower service around a route filter's service, applying the checks above.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    routes: Option<Arc<RouteTable>>,
    deadline: Duration,
}

impl<S> Guarded<S> {
    /// Guards `inner` with `routes` (none: every path goes to the filter) and a per-request
    /// `deadline`.
    pub fn new(inner: S, routes: Option<Arc<RouteTable>>, deadline: Duration) -> Self {
        Self {
            inner,
            routes,
            deadline,
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

fn ready(r: Response) -> Answer {
    Box::pin(std::future::ready(Ok(r)))
}

impl<S, B> tower_service::Service<Request<B>> for Guarded<S>
where
    S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        for name in READ_HEADERS {
            if req.headers().get_all(name).iter().any(bad_header_value) {
                return ready(refused(
                    StatusCode::BAD_REQUEST,
                    "bad_header",
                    "invalid_header",
                    &format!("header {name}: only visible ASCII characters are allowed"),
                ));
            }
        }
        if let Some(table) = &self.routes {
            match table.verdict(req.method(), req.uri().path()) {
                Verdict::NotFound => {
                    return ready(refused(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "not_found",
                        "no such route",
                    ))
                }
                Verdict::NotAllowed(allow) => {
                    let mut r = refused(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "method_not_allowed",
                        &format!("method {} not allowed here; allowed: {allow}", req.method()),
                    );
                    if let Ok(v) = HeaderValue::from_str(&allow) {
                        r.headers_mut().insert(warp::http::header::ALLOW, v);
                    }
                    return ready(r);
                }
                Verdict::Serve { as_get: true } => *req.method_mut() = Method::GET,
                Verdict::Serve { as_get: false } => {}
            }
        }
        let fut = self.inner.call(req);
        let deadline = self.deadline;
        Box::pin(async move {
            match tokio::time::timeout(deadline, fut).await {
                Ok(answer) => answer,
                Err(_) => Ok(refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "deadline",
                    "request_deadline",
                    "the request could not be completed in time; retry shortly",
                )),
            }
        })
    }
}

/// A connection's byte stream that turns the HTTP library's own bodiless error answers (400,
/// 414, 431 for requests it could not parse) into JSON errors like every other answer.
pub struct JsonErrorStream<T> {
    inner: T,
    /// A replacement being written, how far it got, and the length it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonErrorStream<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The JSON version of one of the library's automatic error answers, if `head` is one.
fn json_version(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status, code, message) = match text.get(..13)? {
        "HTTP/1.1 400 " => (400, "bad_request", "the request could not be parsed"),
        "HTTP/1.1 414 " => (414, "uri_too_long", "the request target is too long"),
        "HTTP/1.1 431 " => (
            431,
            "header_fields_too_large",
            "the request headers are too large or too many",
        ),
        _ => return None,
    };
    let lower = text.to_ascii_lowercase();
    if !lower.contains("content-length: 0\r\n") || lower.contains("content-type:") {
        return None;
    }
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    HTTP_REJECTIONS.with_label_values(&[code]).inc();
    let reason = text.get(13..text.find("\r\n")?)?;
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonErrorStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonErrorStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match json_version(buf) {
                Some(replacement) => this.pending = Some((replacement, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        while let Some((bytes, done, stands_for)) = &mut this.pending {
            if *done >= bytes.len() {
                let n = *stands_for;
                this.pending = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    this.pending = None;
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.pending.is_some() || first.is_some_and(|b| b.starts_with(b"HTTP/1.1 4")) {
            return match first {
                Some(b) => self.poll_write(cx, b),
                None => Poll::Ready(Ok(0)),
            };
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn bad_header_value(v: &HeaderValue) -> bool {
    v.as_bytes()
        .iter()
        .any(|b| !(*b == b'\t' || (0x20..0x7f).contains(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_answers_404_405_and_head() {
        let t = RouteTable::new([
            ("GET", "/v1/scrolls"),
            ("post", "/v1/scrolls"),
            ("GET", "/v1/scrolls/{scroll}/receipts/{seq}"),
            ("POST", "/v1/scrolls/{scroll}/receipts"),
        ]);
        assert_eq!(
            t.verdict(&Method::GET, "/v1/scrolls"),
            Verdict::Serve { as_get: false }
        );
        assert_eq!(
            t.verdict(&Method::HEAD, "/v1/scrolls/a/receipts/1"),
            Verdict::Serve { as_get: true }
        );
        assert_eq!(
            t.verdict(&Method::TRACE, "/v1/scrolls"),
            Verdict::NotAllowed("GET, HEAD, POST".into())
        );
        assert_eq!(
            t.verdict(&Method::GET, "/v1/scrolls/a/receipts"),
            Verdict::NotAllowed("POST".into())
        );
        assert_eq!(
            t.verdict(&Method::HEAD, "/v1/scrolls/a/receipts"),
            Verdict::NotAllowed("POST".into())
        );
        assert_eq!(t.verdict(&Method::GET, "/v1/nope"), Verdict::NotFound);
        let t = t.with([("POST", "/v1/scrolls/{scroll}/receipts/batch")]);
        assert_eq!(
            t.verdict(&Method::GET, "/v1/scrolls/a/receipts/batch"),
            Verdict::NotAllowed("POST".into())
        );
        assert_eq!(
            t.verdict(&Method::GET, "/v1/scrolls/a/receipts/7"),
            Verdict::Serve { as_get: false }
        );
        assert_eq!(
            t.verdict(&Method::GET, "/v1/scrolls//receipts/1"),
            Verdict::NotFound
        );
        assert_eq!(t.verdict(&Method::GET, "/v1/scrolls/"), Verdict::NotFound);
    }

    #[test]
    fn only_the_librarys_bodiless_errors_are_rewritten() {
        let auto =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = json_version(auto).map(|v| String::from_utf8_lossy(&v).to_string());
        let out = out.unwrap_or_else(|| panic!("not rewritten"));
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.ends_with(r#"{"error":{"code":"header_fields_too_large","message":"the request headers are too large or too many"}}"#));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(json_version(ours).is_none());
        assert!(json_version(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_version(b"HTTP/1.1 4").is_none());
    }

    #[test]
    fn header_bytes_beyond_visible_ascii_are_bad() {
        for (v, bad) in [
            (&b"Bearer abc"[..], false),
            (b"k\tv", false),
            (b"caf\xc3\xa9", true),
            (b"\x80", true),
        ] {
            let hv = HeaderValue::from_bytes(v).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(bad_header_value(&hv), bad, "{v:?}");
        }
    }
}
