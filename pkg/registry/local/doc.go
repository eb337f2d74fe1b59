// Package local reads the facts of images on disk, named as skopeo names
// them: an OCI image layout folder ("oci:PATH[:TAG|@DIGEST]") or a docker
// save archive ("docker-archive:PATH[:TAG|:@INDEX]"). It is the sibling of
// the registry client (package registry) and answers with its Inspection
// and InspectionError types and its platform selection.
//
// Only index, manifest and config are read, never layer contents, so a
// layout whose layer blobs are absent still checks; every document read is
// capped and checked against its descriptor, as local input may be
// hostile.
package local
