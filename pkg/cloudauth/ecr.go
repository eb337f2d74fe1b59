package cloudauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/smithy-go"
	"github.com/awslabs/amazon-ecr-credential-helper/ecr-login/api"
)

// ecrProvider fetches ECR authorization tokens with the AWS SDK's default
// credential chain (environment, IRSA's web identity token, EKS Pod
// Identity, the instance role). Registry hosts are recognised by the ECR
// credential helper's own parser (every partition, FIPS and dual-stack
// endpoints); ECR Public (public.ecr.aws) is left anonymous, as its
// images are public.
//
// The helper's client itself is not used: it takes no context, keeps its
// tokens in a file, and does not say when they expire.
type ecrProvider struct {
	cfg aws.Config
}

func newECR(ctx context.Context, opts Options) (*ecrProvider, error) {
	var client config.HTTPClient = awshttp.NewBuildableClient().WithTimeout(opts.FetchTimeout)
	if opts.Transport != nil {
		client = opts.client()
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(client))
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return &ecrProvider{cfg: cfg}, nil
}

func (*ecrProvider) name() string { return ECR }

// key is the region's endpoint: one token serves every registry of the
// region the identity may read.
func (*ecrProvider) key(host string) string {
	reg, ok := ecrRegistry(host)
	switch {
	case !ok:
		return ""
	case reg.FIPS:
		return reg.Region + "-fips"
	}
	return reg.Region
}

// ecrRegistry parses a private ECR registry host.
func ecrRegistry(host string) (*api.Registry, bool) {
	reg, err := api.ExtractRegistry(host)
	if err != nil || reg.Service != api.ServiceECR {
		return nil, false
	}
	return reg, true
}

func (p *ecrProvider) fetch(ctx context.Context, host string) (credential, error) {
	reg, ok := ecrRegistry(host)
	if !ok {
		return credential{}, fmt.Errorf("%s is not an ECR registry", host)
	}
	client := ecr.NewFromConfig(p.cfg, func(o *ecr.Options) {
		o.Region = reg.Region
		if reg.FIPS {
			o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
		}
	})
	out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		// The SDK's message leads with the operation and the HTTP
		// exchange; what ECR said is what tells the operator the cause.
		var ae smithy.APIError
		if errors.As(err, &ae) {
			err = fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
		}
		return credential{}, fmt.Errorf("token for %s: %w", reg.Region, err)
	}
	for _, d := range out.AuthorizationData {
		if d.AuthorizationToken == nil {
			continue
		}
		user, password, err := decodeECRToken(*d.AuthorizationToken)
		if err != nil {
			return credential{}, err
		}
		return credential{username: user, password: password, expires: aws.ToTime(d.ExpiresAt)}, nil
	}
	return credential{}, fmt.Errorf("no authorization token for %s in ECR's answer", reg.Region)
}

// decodeECRToken splits an ECR authorization token, base64 of
// "user:password".
func decodeECRToken(token string) (user, password string, err error) {
	b, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return "", "", fmt.Errorf("decoding ECR's authorization token: %w", err)
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok || user == "" || password == "" {
		return "", "", errors.New("ECR's authorization token is not user:password")
	}
	return user, password, nil
}
