// Package image describes what slimgate may know of a container image: the
// facts read from its manifest and config blob, never from its layers.
package image
