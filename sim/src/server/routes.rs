//! The routing table of the package API: the twelve restJson1 operations, each found from
//! its method and path (with the path's labels), and the decoding of paths and queries.

use axum::http::{Method, Uri};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreatePackage,
    UpdatePackage,
    DescribePackages,
    GetPackageVersionHistory,
    DeletePackage,
    AssociatePackage,
    AssociatePackages,
    DissociatePackage,
    DissociatePackages,
    ListDomainsForPackage,
    ListPackagesForDomain,
    UpdatePackageScope,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::CreatePackage,
        Operation::UpdatePackage,
        Operation::DescribePackages,
        Operation::GetPackageVersionHistory,
        Operation::DeletePackage,
        Operation::AssociatePackage,
        Operation::AssociatePackages,
        Operation::DissociatePackage,
        Operation::DissociatePackages,
        Operation::ListDomainsForPackage,
        Operation::ListPackagesForDomain,
        Operation::UpdatePackageScope,
    ];

    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::CreatePackage => "CreatePackage",
            Operation::UpdatePackage => "UpdatePackage",
            Operation::DescribePackages => "DescribePackages",
            Operation::GetPackageVersionHistory => "GetPackageVersionHistory",
            Operation::DeletePackage => "DeletePackage",
            Operation::AssociatePackage => "AssociatePackage",
            Operation::AssociatePackages => "AssociatePackages",
            Operation::DissociatePackage => "DissociatePackage",
            Operation::DissociatePackages => "DissociatePackages",
            Operation::ListDomainsForPackage => "ListDomainsForPackage",
            Operation::ListPackagesForDomain => "ListPackagesForDomain",
            Operation::UpdatePackageScope => "UpdatePackageScope",
        }
    }
}

/// An operation and the labels taken from its path.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) operation: Operation,
    pub(super) package_id: Option<String>,
    pub(super) domain_name: Option<String>,
}

pub(super) fn route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let plain = |operation| Route {
        operation,
        package_id: None,
        domain_name: None,
    };
    let with = |operation, package: Option<&str>, domain: Option<&str>| Route {
        operation,
        package_id: package.map(str::to_string),
        domain_name: domain.map(str::to_string),
    };
    let m = method.clone();
    Some(match (m, segs.as_slice()) {
        (Method::POST, ["2021-01-01", "packages"]) => plain(Operation::CreatePackage),
        (Method::POST, ["2021-01-01", "packages", "update"]) => plain(Operation::UpdatePackage),
        (Method::POST, ["2021-01-01", "packages", "describe"]) => {
            plain(Operation::DescribePackages)
        }
        (Method::POST, ["2021-01-01", "packages", "updateScope"]) => {
            plain(Operation::UpdatePackageScope)
        }
        (Method::POST, ["2021-01-01", "packages", "associateMultiple"]) => {
            plain(Operation::AssociatePackages)
        }
        (Method::POST, ["2021-01-01", "packages", "dissociateMultiple"]) => {
            plain(Operation::DissociatePackages)
        }
        (Method::POST, ["2021-01-01", "packages", "associate", id, domain]) => {
            with(Operation::AssociatePackage, Some(id), Some(domain))
        }
        (Method::POST, ["2021-01-01", "packages", "dissociate", id, domain]) => {
            with(Operation::DissociatePackage, Some(id), Some(domain))
        }
        (Method::GET, ["2021-01-01", "packages", id, "history"]) => {
            with(Operation::GetPackageVersionHistory, Some(id), None)
        }
        (Method::GET, ["2021-01-01", "packages", id, "domains"]) => {
            with(Operation::ListDomainsForPackage, Some(id), None)
        }
        (Method::DELETE, ["2021-01-01", "packages", id]) => {
            with(Operation::DeletePackage, Some(id), None)
        }
        (Method::GET, ["2021-01-01", "domain", domain, "packages"]) => {
            with(Operation::ListPackagesForDomain, None, Some(domain))
        }
        _ => return None,
    })
}

/// `%XX` escapes; `+` means a space only in a query string.
pub(crate) fn percent_decode(segment: &str, plus_is_space: bool) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}
