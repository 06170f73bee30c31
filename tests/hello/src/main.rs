//! The cold-start baseline for `make bench` (tests/benches/coldstart.rs): the smallest
//! lambda_http function, as `cargo lambda new` writes it, with the same lambda_http
//! features and release profile as the Cinder functions. Not deployed; it only measures
//! what any Rust HTTP Lambda pays before and at its first request.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello world")))
    }))
    .await
}
