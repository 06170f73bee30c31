//! The media function presigns without an S3 client (`cinder_aws::media::S3Presigner`). Its
//! URLs must be the ones `aws-sdk-s3`'s presigner makes, byte for byte: S3 checks the
//! signature, and moto, which the other tests upload through, does not. So each case here
//! presigns the same request both ways, at the same time with the same keys, and compares.

#![cfg(feature = "media")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use cinder_aws::media::{S3Endpoint, S3Presigner};
use cinder_proto::media::ObjectKey;
use cinder_proto::{ChannelId, MediaId, RoomId, Timestamp};
use cinder_server::store::{MediaUrls, Presigned};

const NOW: Timestamp = Timestamp(1_800_000_123);
const TTL: u64 = 600;

fn keys() -> [ObjectKey; 2] {
    [
        ObjectKey::Attachment {
            room: RoomId([0xa1; 16]),
            channel: ChannelId([0x5c; 16]),
            number: 42,
            media: MediaId([0x07; 16]),
        },
        ObjectKey::Avatar {
            room: RoomId([0xa1; 16]),
            media: MediaId([0xfe; 16]),
        },
    ]
}

fn credentials(session: bool) -> Credentials {
    Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        session.then(|| "IQoJb3JpZ2luX2VjEXAMPLE/+session=token".to_owned()),
        None,
        "parity",
    )
}

/// One addressing, set up both ways.
struct Case {
    region: &'static str,
    endpoint: S3Endpoint,
    session: bool,
}

impl Case {
    fn sdk(&self) -> aws_sdk_s3::Client {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region))
            .credentials_provider(credentials(self.session));
        config = match &self.endpoint {
            S3Endpoint::Aws { fips, dual_stack } => {
                config.use_fips(*fips).use_dual_stack(*dual_stack)
            }
            S3Endpoint::PathStyle(url) => config.endpoint_url(url).force_path_style(true),
        };
        aws_sdk_s3::Client::from_conf(config.build())
    }

    fn ours(&self, bucket: &str) -> S3Presigner {
        S3Presigner::new(
            self.endpoint.clone(),
            bucket,
            self.region,
            SharedCredentialsProvider::new(credentials(self.session)),
        )
        .unwrap()
    }
}

fn presigning() -> PresigningConfig {
    PresigningConfig::builder()
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.0))
        .expires_in(Duration::from_secs(TTL))
        .build()
        .unwrap()
}

fn theirs(request: &PresignedRequest) -> Presigned {
    Presigned {
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect(),
    }
}

fn cases() -> Vec<Case> {
    let aws = |fips, dual_stack| S3Endpoint::Aws { fips, dual_stack };
    let mut cases = Vec::new();
    for session in [false, true] {
        for region in ["us-east-1", "eu-west-2", "ap-southeast-2", "us-gov-west-1"] {
            for (fips, dual_stack) in [(false, false), (true, false), (false, true), (true, true)] {
                cases.push(Case {
                    region,
                    endpoint: aws(fips, dual_stack),
                    session,
                });
            }
        }
        for dual_stack in [false, true] {
            cases.push(Case {
                region: "cn-north-1",
                endpoint: aws(false, dual_stack),
                session,
            });
        }
        for url in ["http://127.0.0.1:5000", "http://127.0.0.1:5000/"] {
            cases.push(Case {
                region: "us-east-1",
                endpoint: S3Endpoint::PathStyle(url.to_owned()),
                session,
            });
        }
    }
    cases
}

#[tokio::test]
async fn presigned_urls_are_the_sdks_byte_for_byte() {
    let bucket = "cinder-media-1a2b3c4d5e6f";
    let mut compared = 0;
    for case in cases() {
        let (sdk, ours) = (case.sdk(), case.ours(bucket));
        for key in keys() {
            for size in [1, 1_048_576, 5 * 1024 * 1024 * 1024] {
                let expected = sdk
                    .put_object()
                    .bucket(bucket)
                    .key(key.to_string())
                    .content_length(size as i64)
                    .presigned(presigning())
                    .await
                    .unwrap();
                let got = ours.upload_url(&key, size, NOW, TTL).await.unwrap();
                assert_eq!(
                    got,
                    theirs(&expected),
                    "PUT {key} {size} in {}",
                    case.region
                );
                assert_eq!(expected.method(), "PUT");
                compared += 1;
            }
            let expected = sdk
                .get_object()
                .bucket(bucket)
                .key(key.to_string())
                .presigned(presigning())
                .await
                .unwrap();
            let got = ours.download_url(&key, NOW, TTL).await.unwrap();
            assert_eq!(got, theirs(&expected), "GET {key} in {}", case.region);
            assert_eq!(expected.method(), "GET");
            compared += 1;
        }
    }
    assert_eq!(compared, 40 * 2 * 4);
}

#[tokio::test]
async fn a_different_key_time_or_secret_changes_the_signature() {
    // The comparison above would also pass were both sides to ignore an input; these show
    // each input reaches our signature.
    let signature = |p: Presigned| {
        p.url
            .split('&')
            .find_map(|q| q.strip_prefix("X-Amz-Signature=").map(str::to_owned))
            .unwrap()
    };
    let case = Case {
        region: "eu-west-2",
        endpoint: S3Endpoint::Aws {
            fips: false,
            dual_stack: false,
        },
        session: true,
    };
    let presigner = case.ours("cinder-media");
    let [one, two] = keys();
    let base = signature(presigner.upload_url(&one, 10, NOW, TTL).await.unwrap());
    let others = [
        presigner.upload_url(&two, 10, NOW, TTL).await.unwrap(),
        presigner.upload_url(&one, 11, NOW, TTL).await.unwrap(),
        presigner
            .upload_url(&one, 10, Timestamp(NOW.0 + 1), TTL)
            .await
            .unwrap(),
        presigner.upload_url(&one, 10, NOW, TTL + 1).await.unwrap(),
        presigner.download_url(&one, NOW, TTL).await.unwrap(),
    ];
    for other in others {
        assert_ne!(signature(other), base);
    }
    let other_secret = S3Presigner::new(
        case.endpoint.clone(),
        "cinder-media",
        case.region,
        SharedCredentialsProvider::new(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "another secret",
            Some("IQoJb3JpZ2luX2VjEXAMPLE/+session=token".to_owned()),
            None,
            "parity",
        )),
    )
    .unwrap();
    assert_ne!(
        signature(other_secret.upload_url(&one, 10, NOW, TTL).await.unwrap()),
        base
    );
}
