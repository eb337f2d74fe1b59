package v1alpha1

// Toolchain declares a toolchain (or a build step) slimgate recognises in
// an image, and the signals that show it. slimgate's own catalog is written
// in this schema; a policy adds entries of its own in
// spec.toolchains.custom.
type Toolchain struct {
	// ID is the stable rule id findings carry and deny/allow name:
	// "toolchain.<name>" (lower case letters, digits and dashes).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^toolchain\.[a-z0-9]([a-z0-9-]*[a-z0-9])?$`
	ID string `json:"id"`

	// Title names the toolchain at the start of finding messages.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Title string `json:"title"`

	// Description says what the entry looks for.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Remedy says what to do instead; "{version}" stands for the version
	// the image declares (see Version).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Remedy string `json:"remedy"`

	// Version names the environment variables that declare the
	// toolchain's version, for the remedy's "{version}".
	// +optional
	Version *ToolchainVersion `json:"version,omitempty"`

	// Requires lists rule ids that must also be found for this entry to be
	// reported: build tools that are a toolchain only next to a compiler.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=64
	// +optional
	Requires []string `json:"requires,omitempty"`

	// Signals are the evidence that the toolchain is in the image.
	Signals ToolchainSignals `json:"signals"`
}

// ToolchainVersion says where a toolchain's version is declared.
type ToolchainVersion struct {
	// Env lists variables whose value holds the version, first found wins.
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=128
	// +optional
	Env []string `json:"env,omitempty"`

	// Parts is how many leading numbers of the version are used: 1
	// ("21" of "21.0.4"; a "1.8" style version gives "8") or 2 ("1.22").
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2
	// +optional
	Parts int32 `json:"parts,omitempty"`

	// Fallback stands for {version} when the image declares none.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Fallback string `json:"fallback,omitempty"`
}

// Strength says how much a signal proves: strong (an install, a
// download, a build) and moderate (an environment variable, a label)
// decide by themselves; weak signals (a default command, a helper
// package) only corroborate a stronger one.
// +kubebuilder:validation:Enum=strong;moderate;weak
type Strength string

const (
	// StrengthStrong signals install or run the toolchain.
	StrengthStrong Strength = "strong"
	// StrengthModerate signals announce it.
	StrengthModerate Strength = "moderate"
	// StrengthWeak signals only corroborate.
	StrengthWeak Strength = "weak"
)

// ToolchainSignals lists the evidence for one toolchain, by kind.
// Patterns are RE2 regular expressions; paths and keys are globs where
// "*" matches any run of characters and "?" one.
type ToolchainSignals struct {
	// Packages are packages installed with apt, apk, yum, dnf, microdnf,
	// tdnf or zypper, or package files installed by path.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Packages []PackageSignal `json:"packages,omitempty"`

	// Downloads are URLs and file names fetched or unpacked in RUN and
	// ADD steps.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Downloads []DownloadSignal `json:"downloads,omitempty"`

	// Paths are where the toolchain lives: COPY and ADD sources and
	// destinations, and files a RUN step moves, copies, links or unpacks
	// there.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Paths []PathSignal `json:"paths,omitempty"`

	// Env are environment variables of the image.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Env []KeyValueSignal `json:"env,omitempty"`

	// Labels are labels of the image.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Labels []KeyValueSignal `json:"labels,omitempty"`

	// Commands are programs run in RUN steps, or named by the image's
	// default command.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Commands []CommandSignal `json:"commands,omitempty"`
}

// PackageSignal matches installed package names. A package installed and
// removed again in the same step does not count.
// +kubebuilder:validation:XValidation:rule="has(self.names) || has(self.pattern)",message="a package signal needs names or a pattern"
type PackageSignal struct {
	// Names are package names, matched exactly (lower case).
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +optional
	Names []string `json:"names,omitempty"`

	// Pattern matches the whole package name (RE2), and needs a literal
	// of at least three characters.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Pattern string `json:"pattern,omitempty"`

	// Strength of the signal; default strong.
	// +optional
	Strength Strength `json:"strength,omitempty"`
}

// DownloadSignal matches a toolchain fetched by URL or file name. One
// fetched into a folder the same step deletes again does not count.
type DownloadSignal struct {
	// Pattern is matched, case-insensitively, in the text of RUN and ADD
	// steps (RE2); it needs a literal of at least three characters.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=512
	Pattern string `json:"pattern"`

	// Unless is a word whose presence in the step makes the download
	// something else ("--runtime" for an installer that can fetch the
	// runtime only).
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Unless string `json:"unless,omitempty"`

	// Homes are the variables naming the folders the fetched installer
	// writes to when it is run; without them what it writes is taken to
	// stay.
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=128
	// +optional
	Homes []string `json:"homes,omitempty"`

	// Runtime matches the archive members (RE2) that hold only the
	// toolchain's runtime: unpacking nothing else installs no toolchain.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Runtime string `json:"runtime,omitempty"`

	// Strength of the signal; default strong.
	// +optional
	Strength Strength `json:"strength,omitempty"`
}

// PathSignal matches where a toolchain is put.
type PathSignal struct {
	// Path is an absolute path glob ("/usr/local/go", "*/bin/kotlinc");
	// a path inside a matching folder matches too.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[*/]`
	Path string `json:"path"`

	// Strength of the signal; default strong.
	// +optional
	Strength Strength `json:"strength,omitempty"`
}

// KeyValueSignal matches an environment variable or a label.
type KeyValueSignal struct {
	// Key is the variable or label name, a glob.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Key string `json:"key"`

	// Value, when set, must match the value (RE2, unanchored).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Value string `json:"value,omitempty"`

	// Strength of the signal; default moderate.
	// +optional
	Strength Strength `json:"strength,omitempty"`
}

// CommandSignal matches a program run in a RUN step, or the image's
// default command.
type CommandSignal struct {
	// Names are program names (the base name: "make" matches
	// /usr/bin/make).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=64
	Names []string `json:"names"`

	// Args match the command's first operands (its words that are not
	// options), in order, each in full (RE2).
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	Args []string `json:"args,omitempty"`

	// AnyArg, when set, must match one argument in full (RE2).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	AnyArg string `json:"anyArg,omitempty"`

	// VersionChecks counts runs that only ask for the version or help
	// ("javac --version"); by default they do not count.
	// +optional
	VersionChecks bool `json:"versionChecks,omitempty"`

	// Default matches the image's default command (ENTRYPOINT and CMD)
	// instead of the commands of RUN steps.
	// +optional
	Default bool `json:"default,omitempty"`

	// Strength of the signal; default strong, weak for a default command.
	// +optional
	Strength Strength `json:"strength,omitempty"`
}
