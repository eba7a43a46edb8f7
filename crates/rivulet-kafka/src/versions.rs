//! The APIs Rivulet serves and the version ranges it advertises.
//!
//! Only fully implemented APIs are listed, with contiguous ranges: clients (kafka-python in
//! particular) infer broker capabilities from this table.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// (api, min version, max version) for every served API.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 3),
    (ApiKey::LeaveGroup, 0, 3),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 2),
    (ApiKey::AlterConfigs, 0, 1),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
];

/// The advertised (min, max) versions of an API, or `None` when it is not served.
pub fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// The ApiVersions response body listing every served API.
pub fn api_versions_response(_version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        SUPPORTED
            .iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/compatibility.md` lists exactly the served APIs, with their advertised ranges.
    #[test]
    fn the_compatibility_table_matches_what_is_advertised() {
        let doc = include_str!("../../../docs/compatibility.md");
        let mut listed = Vec::new();
        for line in doc
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| API"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (key, versions) = (cells[2], cells[3]);
            let (Ok(key), Some((min, max))) = (key.parse::<i16>(), versions.split_once('-')) else {
                assert!(versions.is_empty() || versions.parse::<i16>().is_ok(), "{line}");
                if let (Ok(key), Ok(v)) = (key.parse::<i16>(), versions.parse::<i16>()) {
                    listed.push((key, v, v));
                }
                continue;
            };
            listed.push((key, min.parse().expect(line), max.parse().expect(line)));
        }
        let mut advertised: Vec<(i16, i16, i16)> = SUPPORTED
            .iter()
            .map(|(k, min, max)| (*k as i16, *min, *max))
            .collect();
        listed.sort_unstable();
        advertised.sort_unstable();
        assert_eq!(listed, advertised, "docs/compatibility.md and SUPPORTED disagree");
    }

    #[test]
    fn advertised_ranges_fit_the_codec() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(
                *min >= valid.min && *max <= valid.max,
                "{key:?} {min}-{max} outside codec range"
            );
        }
    }
}
