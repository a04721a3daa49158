use super::*;

fn object(namespace: &str, name: &str, package_name: Option<&str>) -> OpenSearchPackage {
    let mut spec = serde_json::json!({
        "packageType": "TXT-DICTIONARY",
        "source": {"s3BucketName": "b", "s3Key": "k"},
    });
    if let Some(package_name) = package_name {
        spec["packageName"] = package_name.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ospkg.dev/v1alpha1",
        "kind": "OpenSearchPackage",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("an object")
}

#[test]
fn without_streams_every_name_may_have_rivals() {
    let names = PackageNames::default();
    assert!(names.may_have_rivals(&object("a", "synonyms", None)));
}

#[test]
fn a_name_claimed_twice_has_rivals_until_one_claim_goes() {
    let names = PackageNames::default();
    let (one, two) = (names.stream(), names.stream());
    let first = object("search", "synonyms", None);
    // Another namespace (another stream), the same package name by spec.packageName.
    let second = object("team", "words", Some("synonyms"));
    let other = object("search", "stopwords", None);
    names.observe(one, &Event::Apply(first.clone()));
    names.observe(one, &Event::Apply(other.clone()));
    assert!(!names.may_have_rivals(&first));
    // Seen again (an update): still one claim.
    names.observe(one, &Event::Apply(first.clone()));
    assert!(!names.may_have_rivals(&first));
    names.observe(two, &Event::Apply(second.clone()));
    assert!(names.may_have_rivals(&first));
    assert!(names.may_have_rivals(&second));
    assert!(!names.may_have_rivals(&other));
    // An object not seen yet with a claimed name has a rival too.
    assert!(names.may_have_rivals(&object("x", "synonyms", None)));
    names.observe(two, &Event::Delete(second.clone()));
    assert!(!names.may_have_rivals(&first));
}

#[test]
fn a_relist_keeps_the_old_claims_until_it_ends() {
    let names = PackageNames::default();
    let stream = names.stream();
    let kept = object("search", "synonyms", None);
    let gone = object("search", "old", Some("synonyms"));
    names.observe(stream, &Event::Apply(kept.clone()));
    names.observe(stream, &Event::Apply(gone.clone()));
    assert!(names.may_have_rivals(&kept));
    names.observe(stream, &Event::Init);
    names.observe(stream, &Event::InitApply(kept.clone()));
    // The cache still holds the old objects until the relist ends.
    assert!(names.may_have_rivals(&kept));
    let arrived = object("search", "new", None);
    names.observe(stream, &Event::InitApply(arrived.clone()));
    names.observe(stream, &Event::InitDone);
    assert!(!names.may_have_rivals(&kept));
    assert!(!names.may_have_rivals(&arrived));
}
