//! Logs and spans counted from the request's bytes. The full
//! `opentelemetry-proto` decode (a `String` per attribute key and value, a
//! `Vec` per record) cost this receiver ~5 µs per record: half a core at
//! 100k records/s on the bench machine, the same two cores the generator and
//! Tapio run on, so the receiver was what capped a run. Here the request
//! stays one `Bytes` (tonic's buffer, not copied), the message types below
//! name only the fields the counts read (prost skips the others without
//! allocating), and a record's attributes stay raw slices of that buffer
//! until a matcher compares their keys.

use bytes::Bytes;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{
    http, Arc, Body, BoxFuture, CompressionEncoding, Context, EnabledCompressionEncodings, Poll,
    Service, StdError,
};
use tonic::Status;

/// ExportLogsServiceRequest / ExportTraceServiceRequest: field 1 holds the
/// resource's records in both.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(message, repeated, tag = "1")]
    pub resources: Vec<Resource>,
}

/// ResourceLogs / ResourceSpans: field 2 holds the scopes in both.
#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "2")]
    pub scopes: Vec<Scope>,
}

/// ScopeLogs / ScopeSpans: field 2 holds the records in both, kept encoded.
#[derive(Clone, PartialEq, Message)]
pub struct Scope {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub records: Vec<Bytes>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogRecord {
    /// An encoded AnyValue, decoded only to print it.
    #[prost(bytes = "bytes", optional, tag = "5")]
    pub body: Option<Bytes>,
    #[prost(bytes = "bytes", repeated, tag = "6")]
    pub attributes: Vec<Bytes>,
    #[prost(bytes = "bytes", tag = "12")]
    pub event_name: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "bytes", tag = "5")]
    pub name: Bytes,
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub attributes: Vec<Bytes>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<SpanStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SpanStatus {
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// The AnyValue kinds a label can use; the others read as absent.
#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 3")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(bytes = "bytes", tag = "1")]
    Str(Bytes),
    #[prost(int64, tag = "3")]
    Int(i64),
}

/// What a service does with one request's bytes.
pub type Handler = Arc<dyn Fn(Bytes) -> Result<(), Status> + Send + Sync>;

/// One OTLP export service, by its gRPC names and its reply.
pub trait Signal: Send + Sync + 'static {
    const SERVICE: &'static str;
    const METHOD: &'static str;
    type Reply: Message + Default + Send + 'static;
}

pub struct Logs;
impl Signal for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const METHOD: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Reply = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
}

pub struct Traces;
impl Signal for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const METHOD: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Reply = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
}

/// A gRPC service that hands each Export request's message bytes to its
/// handler (gzip accepted, as the generated servers were configured).
pub struct LeanService<S> {
    handler: Handler,
    max_message: usize,
    signal: PhantomData<S>,
}

impl<S> LeanService<S> {
    pub fn new(handler: Handler, max_message: usize) -> Self {
        Self {
            handler,
            max_message,
            signal: PhantomData,
        }
    }
}

impl<S> Clone for LeanService<S> {
    fn clone(&self) -> Self {
        Self::new(self.handler.clone(), self.max_message)
    }
}

impl<S: Signal> tonic::server::NamedService for LeanService<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S: Signal, B> Service<http::Request<B>> for LeanService<S>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let export = Export::<S>(self.handler.clone(), PhantomData);
        let max = self.max_message;
        Box::pin(async move {
            if req.uri().path() != S::METHOD {
                return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec::<S::Reply>(PhantomData))
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(export, req).await)
        })
    }
}

struct Export<S>(Handler, PhantomData<S>);

impl<S: Signal> tonic::server::UnaryService<Bytes> for Export<S> {
    type Response = S::Reply;
    type Future = BoxFuture<tonic::Response<S::Reply>, Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let done = (self.0)(req.into_inner()).map(|()| tonic::Response::new(S::Reply::default()));
        Box::pin(std::future::ready(done))
    }
}

/// Decodes a request as its message bytes; encodes the reply with prost.
struct RawCodec<R>(PhantomData<R>);

impl<R: Message + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ReplyEncoder<R>;
    type Decoder = RequestBytes;

    fn encoder(&mut self) -> Self::Encoder {
        ReplyEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestBytes
    }
}

struct ReplyEncoder<R>(PhantomData<R>);

impl<R: Message> Encoder for ReplyEncoder<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

struct RequestBytes;

impl Decoder for RequestBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // tonic's buffer is a BytesMut: this splits it, it does not copy.
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}
