"""boto3 against ospkg-sim: a second, independent client of the wire format.

botocore validates what it sends and parses what it gets against the service model, so a
member name, type or error shape the simulator got wrong fails here. Run through run.sh,
which starts the simulator (manual clock, package quota 5, domains `search` and `logs`).
"""

import datetime
import hashlib
import io
import json
import os
import urllib.request
import zipfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

ENDPOINT = os.environ["OSPKG_SIM_ENDPOINT"]
S3_ENDPOINT = os.environ["OSPKG_SIM_S3"]
# botocore's `max_attempts` counts retries only; `total_max_attempts` includes the first call.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
DESCRIPTOR = (
    "name=example-plugin\ndescription=Example plugin\nversion=1.0.0\n"
    "classname=org.example.ExamplePlugin\n"
)


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{ENDPOINT}/_sim{path}", data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def advance(ms):
    admin("POST", "/clock/advance", {"ms": ms})


def opensearch(region="us-east-1", key="test"):
    return boto3.client(
        "opensearch",
        endpoint_url=ENDPOINT,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key="secret",
        config=NO_RETRIES,
    )


def s3():
    return boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def plugin_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("plugin-descriptor.properties", DESCRIPTOR)
        z.writestr("example.jar", b"\0" * 100)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def fresh_state():
    admin("POST", "/reset", {})
    admin("PUT", "/faults", {})
    yield


def source(key, bucket="pkgs"):
    return {"S3BucketName": bucket, "S3Key": key}


def test_every_operation_round_trips():
    store = s3()
    store.put_object(Bucket="pkgs", Key="syn.txt", Body=b"car, automobile\n")
    store.put_object(Bucket="pkgs", Key="plugin.zip", Body=plugin_zip())
    assert store.get_object(Bucket="pkgs", Key="syn.txt")["Body"].read() == b"car, automobile\n"
    c = opensearch()

    created = c.create_package(
        PackageName="boto-synonyms",
        PackageType="TXT-DICTIONARY",
        PackageDescription="from boto3",
        PackageSource=source("syn.txt"),
        PackageVendingOptions={"VendingEnabled": True},
        PackageEncryptionOptions={"EncryptionEnabled": True, "KmsKeyIdentifier": "alias/k"},
    )["PackageDetails"]
    dict_id = created["PackageID"]
    assert created["PackageStatus"] == "COPYING"
    assert isinstance(created["CreatedAt"], datetime.datetime)
    assert created["PackageEncryptionOptions"] == {"EncryptionEnabled": True, "KmsKeyIdentifier": "alias/k"}
    plugin = c.create_package(
        PackageName="boto-plugin",
        PackageType="ZIP-PLUGIN",
        EngineVersion="OpenSearch_2.15",
        PackageSource=source("plugin.zip"),
        PackageConfiguration={
            "LicenseRequirement": "NONE",
            "ConfigurationRequirement": "OPTIONAL",
            "RequiresRestartForConfigurationUpdate": False,
        },
    )["PackageDetails"]
    advance(3000)

    described = c.describe_packages(
        Filters=[{"Name": "PackageName", "Value": ["boto-*"]}], MaxResults=1
    )
    assert len(described["PackageDetailsList"]) == 1 and "NextToken" in described
    rest = c.describe_packages(
        Filters=[{"Name": "PackageName", "Value": ["boto-*"]}],
        MaxResults=1,
        NextToken=described["NextToken"],
    )
    assert "NextToken" not in rest
    details = {d["PackageName"]: d for d in described["PackageDetailsList"] + rest["PackageDetailsList"]}
    assert details["boto-synonyms"]["PackageStatus"] == "AVAILABLE"
    props = details["boto-plugin"]["AvailablePluginProperties"]
    assert props["ClassName"] == "org.example.ExamplePlugin"
    assert props["UncompressedSizeInBytes"] == len(DESCRIPTOR) + 100
    assert details["boto-plugin"]["AvailablePackageConfiguration"]["ConfigurationRequirement"] == "OPTIONAL"

    updated = c.update_package(
        PackageID=dict_id, PackageSource=source("syn.txt"), CommitMessage="second version"
    )["PackageDetails"]
    assert updated["PackageStatus"] == "COPYING"
    advance(3000)
    history = c.get_package_version_history(PackageID=dict_id, MaxResults=10)
    assert history["PackageID"] == dict_id
    assert [(h["PackageVersion"], h.get("CommitMessage")) for h in history["PackageVersionHistoryList"]] == [
        ("v2", "second version"),
        ("v1", None),
    ]

    one = c.associate_package(PackageID=dict_id, DomainName="search")["DomainPackageDetails"]
    assert one["DomainPackageStatus"] == "ASSOCIATING"
    assert one["ReferencePath"] == f"analyzers/{dict_id}"
    assert isinstance(one["LastUpdated"], datetime.datetime)
    many = c.associate_packages(
        DomainName="logs",
        PackageList=[
            {"PackageID": dict_id},
            {"PackageID": plugin["PackageID"], "PrerequisitePackageIDList": [dict_id]},
        ],
    )["DomainPackageDetailsList"]
    assert [m["DomainPackageStatus"] for m in many] == ["ASSOCIATING", "ASSOCIATING"]
    advance(3000)
    on_search = c.list_packages_for_domain(DomainName="search", MaxResults=5)["DomainPackageDetailsList"]
    assert [(p["PackageID"], p["DomainPackageStatus"], p["PackageVersion"]) for p in on_search] == [
        (dict_id, "ACTIVE", "v2")
    ]
    domains = c.list_domains_for_package(PackageID=dict_id)["DomainPackageDetailsList"]
    assert sorted(d["DomainName"] for d in domains) == ["logs", "search"]

    gone = c.dissociate_package(PackageID=dict_id, DomainName="search")["DomainPackageDetails"]
    assert gone["DomainPackageStatus"] == "DISSOCIATING"
    gone = c.dissociate_packages(DomainName="logs", PackageList=[plugin["PackageID"], dict_id])
    assert len(gone["DomainPackageDetailsList"]) == 2
    advance(2000)

    scope = c.update_package_scope(PackageID=dict_id, Operation="ADD", PackageUserList=["111122223333"])
    assert scope["PackageUserList"] == ["111122223333"] and scope["Operation"] == "ADD"

    deleted = c.delete_package(PackageID=dict_id)["PackageDetails"]
    assert deleted["PackageStatus"] == "DELETING"
    calls = admin("GET", "/calls")
    for op in [
        "CreatePackage", "UpdatePackage", "DescribePackages", "GetPackageVersionHistory",
        "DeletePackage", "AssociatePackage", "AssociatePackages", "DissociatePackage",
        "DissociatePackages", "ListDomainsForPackage", "ListPackagesForDomain", "UpdatePackageScope",
    ]:
        assert calls.get(op, 0) >= 1, op


def test_main_errors_have_the_right_exception_classes():
    c = opensearch()
    admin("PUT", "/objects/pkgs/e.txt", None)
    with pytest.raises(c.exceptions.ValidationException) as e:
        c.create_package(PackageName="Bad_Name", PackageType="TXT-DICTIONARY", PackageSource=source("e.txt"))
    assert "PackageName" in str(e.value)
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_package_version_history(PackageID="F424242")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.list_packages_for_domain(DomainName="nowhere")
    first = c.create_package(PackageName="errors", PackageType="TXT-DICTIONARY", PackageSource=source("e.txt"))
    first_id = first["PackageDetails"]["PackageID"]
    with pytest.raises(c.exceptions.ResourceAlreadyExistsException):
        c.create_package(PackageName="errors", PackageType="TXT-DICTIONARY", PackageSource=source("e.txt"))
    with pytest.raises(c.exceptions.DisabledOperationException):
        c.update_package_scope(PackageID=first_id, Operation="ADD", PackageUserList=["GLOBAL"])
    for n in range(4):
        c.create_package(PackageName=f"quota-{n}", PackageType="TXT-DICTIONARY", PackageSource=source("e.txt"))
    with pytest.raises(c.exceptions.LimitExceededException):
        c.create_package(PackageName="quota-x", PackageType="TXT-DICTIONARY", PackageSource=source("e.txt"))
    advance(3000)
    c.associate_package(PackageID=first_id, DomainName="search")
    with pytest.raises(c.exceptions.ConflictException):
        c.delete_package(PackageID=first_id)
    with pytest.raises(c.exceptions.ValidationException) as e:
        c.delete_package(PackageID="G100000001")
    assert "cannot be deleted" in str(e.value)

    admin("PUT", "/faults", {"seed": 1, "operations": {"DescribePackages": {"throttle": 1.0}}})
    with pytest.raises(ClientError) as e:
        c.describe_packages()
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    admin("PUT", "/faults", {"operations": {"*": {"internal": 1.0}}})
    with pytest.raises(c.exceptions.InternalException):
        c.describe_packages()


def test_regions_are_separate():
    admin("PUT", "/objects/pkgs/r.txt", None)
    east, west = opensearch("us-east-1"), opensearch("eu-west-1")
    east.create_package(PackageName="regional", PackageType="TXT-DICTIONARY", PackageSource=source("r.txt"))
    names = [p["PackageName"] for p in west.describe_packages()["PackageDetailsList"]]
    assert "regional" not in names
    west.create_package(PackageName="regional", PackageType="TXT-DICTIONARY", PackageSource=source("r.txt"))


def test_scripted_faults_through_the_admin_api():
    c = opensearch(key="AKIDBOTO")
    admin("PUT", "/objects/pkgs/s.txt", None)
    for fault in ({"kind": "accessDenied"}, {"kind": "closeAfterEffect"}, {"kind": "errorAfterEffect"}):
        admin("POST", "/faults/script", {"operation": "CreatePackage", "fault": fault})
    assert len(admin("GET", "/faults")["script"]["CreatePackage"]) == 3

    def create(name):
        return c.create_package(PackageName=name, PackageType="TXT-DICTIONARY", PackageSource=source("s.txt"))

    with pytest.raises(c.exceptions.AccessDeniedException) as e:
        create("denied")
    assert "es:CreatePackage" in str(e.value)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # No response at all: botocore reports a connection error, yet the package was made.
    with pytest.raises((HTTPClientError, BotoConnectionError)):
        create("closed")
    with pytest.raises(c.exceptions.InternalException):
        create("errored")
    names = {p["PackageName"] for p in c.describe_packages()["PackageDetailsList"]}
    assert {"closed", "errored"} <= names and "denied" not in names
    calls = [e for e in admin("GET", "/log") if e.get("operation") == "CreatePackage"]
    assert [(e.get("status"), e.get("fault"), e["accessKeyId"]) for e in calls] == [
        (403, "accessDenied", "AKIDBOTO"),
        (None, "closeAfterEffect", "AKIDBOTO"),
        (500, "errorAfterEffect", "AKIDBOTO"),
    ]


def test_s3_head_object_answers_what_a_follower_reads():
    """ETag, VersionId and Last-Modified on HEAD, delete markers, denied keys and a bucket in
    another region, parsed by botocore (and its region redirector)."""
    store = s3()
    admin("PUT", "/buckets/boto-versioned", {"versioned": True})
    first = store.put_object(Bucket="boto-versioned", Key="v.txt", Body=b"one\n")
    head = store.head_object(Bucket="boto-versioned", Key="v.txt")
    assert head["ETag"] == first["ETag"] == '"%s"' % hashlib.md5(b"one\n").hexdigest()
    assert head["VersionId"] == first["VersionId"]
    assert isinstance(head["LastModified"], datetime.datetime)
    again = store.put_object(Bucket="boto-versioned", Key="v.txt", Body=b"one\n")
    assert again["ETag"] == first["ETag"] and again["VersionId"] != first["VersionId"]
    store.delete_object(Bucket="boto-versioned", Key="v.txt")
    with pytest.raises(ClientError) as e:
        store.head_object(Bucket="boto-versioned", Key="v.txt")
    assert e.value.response["Error"]["Code"] == "404"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"

    admin("PUT", "/buckets/boto-locked", {"deny": ["*"]})
    with pytest.raises(ClientError) as e:
        store.head_object(Bucket="boto-locked", Key="x.txt")
    assert e.value.response["Error"]["Code"] == "403"

    admin("PUT", "/buckets/boto-frankfurt", {"region": "eu-central-1"})
    admin("PUT", "/objects/boto-frankfurt/k.txt", None)
    head = store.head_object(Bucket="boto-frankfurt", Key="k.txt")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
    heads = [
        (e["region"], e["status"])
        for e in admin("GET", "/log")
        if e.get("operation") == "HeadObject" and e.get("bucket") == "boto-frankfurt"
    ]
    assert heads == [("us-east-1", 301), ("eu-central-1", 200)]


def sts(key="test", token=None):
    return boto3.client(
        "sts",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="secret",
        aws_session_token=token,
        config=NO_RETRIES,
    )


def test_sts_assume_role_and_caller_identity():
    role = "arn:aws:iam::444455556666:role/boto-tenant"
    admin("PUT", "/sts/roles", [{"roleArn": role, "externalId": "boto-ext"}])
    me = sts().get_caller_identity()
    assert me["Account"] == "123456789012"
    assert me["Arn"] == "arn:aws:iam::123456789012:user/sim"

    with pytest.raises(ClientError) as e:
        sts().assume_role(RoleArn=role, RoleSessionName="boto")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    assumed = sts().assume_role(
        RoleArn=role,
        RoleSessionName="boto",
        ExternalId="boto-ext",
        DurationSeconds=900,
        Tags=[{"Key": "tenant", "Value": "blue"}],
    )
    creds = assumed["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA444455556666")
    assert isinstance(creds["Expiration"], datetime.datetime)
    lifetime = creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)
    assert 890 <= lifetime.total_seconds() <= 900
    user = assumed["AssumedRoleUser"]
    assert user["Arn"] == "arn:aws:sts::444455556666:assumed-role/boto-tenant/boto"

    who = sts(creds["AccessKeyId"], creds["SessionToken"]).get_caller_identity()
    assert (who["Account"], who["Arn"], who["UserId"]) == (
        "444455556666",
        user["Arn"],
        user["AssumedRoleId"],
    )

    # The session's package calls act in the role's account.
    s3().put_object(Bucket="pkgs", Key="tenant.txt", Body=b"a, b\n")
    tenant = boto3.client(
        "opensearch",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=NO_RETRIES,
    )
    tenant.create_package(
        PackageName="boto-tenant", PackageType="TXT-DICTIONARY", PackageSource=source("tenant.txt")
    )
    accounts = {
        scope["account"]
        for scope in admin("GET", "/packages")["scopes"]
        if any(p["details"]["PackageName"] == "boto-tenant" for p in scope["packages"])
    }
    assert accounts == {"444455556666"}

    with pytest.raises(ClientError) as e:
        opensearch(key="ASIA444455556666ZZZZ").describe_packages()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"

    log = admin("GET", "/sts/log")
    assert [(x["operation"], x.get("errorCode")) for x in log] == [
        ("GetCallerIdentity", None),
        ("AssumeRole", "AccessDenied"),
        ("AssumeRole", None),
        ("GetCallerIdentity", None),
    ]
    assert log[2]["tags"] == {"tenant": "blue"} and log[2]["externalIdGiven"] is True
    admin("PUT", "/sts/roles", [])
