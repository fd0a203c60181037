//! Tests of the end-to-end harness itself (`tests/support`): if these fail, every other
//! end-to-end failure is suspect. They pin down that fixtures survive a real registry byte for
//! byte, that auth is really enforced, and that the request log counts exactly.

mod support;

use support::fixtures::{self, Format, ImageSpec};
use support::{RequestKind, TestRegistry, skopeo};

const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];

async fn assert_round_trip(reg: &TestRegistry, repo: &str, spec: ImageSpec) {
    let image = spec.build();
    let client = reg.client();
    client.push_image(repo, "v1", &image).await;

    let top = client.get_manifest(repo, "v1").await.expect("tag exists");
    assert_eq!(top.bytes, image.top().bytes, "index bytes changed");
    assert_eq!(top.content_type, image.top().media_type);
    assert_eq!(top.digest.as_deref(), Some(image.digest()));
    for m in &image.manifests {
        let got = client.get_manifest(repo, &m.digest).await.expect("child");
        assert_eq!(got.bytes, m.bytes);
        assert_eq!(got.content_type, m.media_type);
    }
    for digest in image.blobs.keys() {
        assert!(client.blob_exists(repo, digest).await, "blob {digest}");
    }
    assert_eq!(client.tags(repo).await, vec!["v1".to_string()]);

    // The peer tool sees the same bytes.
    let via_skopeo = skopeo::inspect_raw(&reg.image_ref(repo, "v1"), reg.credentials());
    assert_eq!(via_skopeo, image.top().bytes);
}

#[tokio::test]
async fn oci_index_and_docker_list_round_trip_byte_identical() {
    let reg = TestRegistry::start();
    let oci = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .seed(11)
        .shared_base_layer(true);
    assert_round_trip(&reg, "multi/oci", oci).await;
    let docker = ImageSpec::multi(Format::Docker, &PLATFORMS).seed(12);
    assert_round_trip(&reg, "multi/docker", docker).await;
    let single = ImageSpec::single(Format::Docker, "linux/amd64").seed(13);
    assert_round_trip(&reg, "single", single).await;
}

#[test]
fn fixtures_are_deterministic_and_shaped_as_asked() {
    let spec = ImageSpec::multi(Format::Oci, &PLATFORMS)
        .seed(5)
        .layers(3)
        .layer_size(1000)
        .shared_base_layer(true);
    let a = spec.build();
    let b = spec.build();
    assert_eq!(a.top(), b.top(), "same seed, same bytes");
    assert_ne!(spec.clone().seed(6).build().digest(), a.digest());

    // 3 platforms x (config + 3 layers), minus the 2 duplicates of the shared base layer.
    assert_eq!(a.blobs.len(), 3 * 4 - 2);
    assert!(
        a.images
            .iter()
            .all(|i| i.layer_digests[0] == a.images[0].layer_digests[0])
    );
    assert_ne!(a.images[0].layer_digests[1], a.images[1].layer_digests[1]);

    let index = a.index.as_ref().unwrap().json();
    assert_eq!(index["mediaType"], fixtures::OCI_INDEX);
    assert_eq!(index["manifests"][1]["platform"]["variant"], "v8");
    assert_eq!(index["manifests"][2]["platform"]["architecture"], "arm");
    let arm = a.manifest_for("linux/arm/v7").json();
    assert_eq!(arm["layers"][0]["mediaType"], fixtures::OCI_LAYER);
    assert_eq!(arm["layers"][0]["size"], 1000);
    let config = &a.blobs[&a.images[2].config_digest];
    let config: serde_json::Value = serde_json::from_slice(config).unwrap();
    assert_eq!(config["variant"], "v7");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let docker = ImageSpec::single(Format::Docker, "linux/amd64").build();
    assert!(docker.index.is_none());
    let m = docker.top().json();
    assert_eq!(m["mediaType"], fixtures::DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], fixtures::DOCKER_CONFIG);
}

#[tokio::test]
async fn auth_registry_refuses_anonymous_and_accepts_the_password() {
    let reg = TestRegistry::start_with_auth("alice", "s3cret");
    let client = reg.client();
    assert_eq!(client.anonymous().ping().await, 401);
    assert_eq!(
        support::RawClient::new(&reg.host())
            .with_auth("alice", "wrong")
            .ping()
            .await,
        401
    );
    assert_eq!(client.ping().await, 200);
    let statuses: Vec<u16> = reg.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [401, 401, 401, 200],
        "readiness probe, anonymous, wrong, right"
    );

    let image = ImageSpec::single(Format::Oci, "linux/amd64").build();
    client.push_image("private", "latest", &image).await;
    assert_eq!(
        skopeo::inspect_raw(&reg.image_ref("private", "latest"), reg.credentials()),
        image.top().bytes
    );
    assert!(!format!("{client:?}").contains("s3cret"));
}

#[tokio::test]
async fn request_log_counts_exactly_what_one_operation_did() {
    let reg = TestRegistry::start();
    let client = reg.client();
    // 2 layers + config = 3 blobs, each POST + PUT; then 1 manifest PUT.
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(3)
        .build();
    let mark = reg.request_mark();
    client.push_image("counted", "v1", &image).await;
    let reqs = reg.requests_since(mark);
    assert_eq!(reqs.len(), 7, "{reqs:#?}");
    assert_eq!(reqs.iter().filter(|r| r.method == "POST").count(), 3);
    assert_eq!(
        reqs.iter()
            .filter(|r| r.is("PUT", RequestKind::is_upload) && r.status == 201)
            .count(),
        3
    );
    let last = reqs.last().unwrap();
    assert_eq!(
        last.kind(),
        RequestKind::Manifest {
            repo: "counted".into(),
            reference: "v1".into()
        }
    );
    assert_eq!((last.method.as_str(), last.status), ("PUT", 201));
    assert_eq!(last.user_agent, "crossdock-test-raw");

    // A second mark sees only what follows it, including a 404.
    let mark = reg.request_mark();
    assert!(client.get_manifest("counted", "nope").await.is_none());
    let reqs = reg.requests_since(mark);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].status), ("GET", 404));

    // A large response is logged only after its body was sent; the log still catches up.
    let big = vec![7u8; 3 << 20];
    let digest = client.push_blob("counted", &big).await;
    let mark = reg.request_mark();
    assert_eq!(
        client.get_blob("counted", &digest).await.unwrap().len(),
        big.len()
    );
    let reqs = reg.requests_since(mark);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert!(reqs[0].is("GET", RequestKind::is_blob));
    assert_eq!(reqs[0].bytes, big.len() as u64);

    // requests() is everything since start (the readiness probe included), until cleared.
    assert_eq!(reg.requests().len(), 1 + 7 + 1 + 2 + 1);
    reg.clear_requests();
    assert!(reg.requests().is_empty());
}

#[tokio::test]
async fn tampered_blob_is_served_with_the_new_bytes() {
    // Tests of digest verification rely on this: distribution does not re-check stored blobs.
    let reg = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(4)
        .build();
    let client = reg.client();
    client.push_image("tamper", "v1", &image).await;
    let layer = &image.images[0].layer_digests[0];
    let path = reg.blob_data_path(layer);
    let mut bytes = std::fs::read(&path).expect("blob data file exists");
    assert_eq!(bytes, image.blobs[layer]);
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(client.get_blob("tamper", layer).await.unwrap(), bytes);
}

#[tokio::test]
async fn stop_and_restart_keep_port_and_storage() {
    let reg = TestRegistry::start();
    let image = ImageSpec::single(Format::Docker, "linux/amd64")
        .seed(8)
        .build();
    let client = reg.client();
    client.push_image("durable", "v1", &image).await;
    reg.stop();
    assert!(
        std::net::TcpStream::connect(reg.host()).is_err(),
        "stopped registry still listening"
    );
    reg.restart();
    let got = client.get_manifest("durable", "v1").await.unwrap();
    assert_eq!(got.bytes, image.top().bytes);
}

#[test]
fn drop_kills_the_registry() {
    let reg = TestRegistry::start();
    let host = reg.host();
    drop(reg);
    assert!(std::net::TcpStream::connect(&host).is_err());
}

#[test]
#[should_panic(expected = "exited early")]
fn extra_yaml_reaches_the_config_and_a_bad_one_fails_clearly() {
    TestRegistry::builder()
        .extra_yaml("notifications: [this is not a notifications block]")
        .start();
}
