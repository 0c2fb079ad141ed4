package registry

// The ECR JSON API (AWS JSON 1.1): BatchGetImage, DescribeImages,
// DescribeRepositories, CreateRepository. Shapes and error types follow the
// ECR API reference; errors are 400 (500 for ServerException) with
// {"__type": ..., "message": ...} and the X-Amzn-ErrorType header.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const targetPrefix = "AmazonEC2ContainerRegistry_V20150921."

type epochTime time.Time

func (t epochTime) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', -1, 64)), nil
}

type imageID struct {
	ImageDigest string `json:"imageDigest,omitempty"`
	ImageTag    string `json:"imageTag,omitempty"`
}

func (id imageID) String() string {
	s := func(v string) string {
		if v == "" {
			return "null"
		}
		return "'" + v + "'"
	}
	return fmt.Sprintf("{imageDigest:%s, imageTag:%s}", s(id.ImageDigest), s(id.ImageTag))
}

type scanningConfig struct {
	ScanOnPush bool `json:"scanOnPush"`
}

type encryptionConfig struct {
	EncryptionType string `json:"encryptionType"`
	KmsKey         string `json:"kmsKey,omitempty"`
}

type repositoryJSON struct {
	RepositoryArn              string           `json:"repositoryArn"`
	RegistryID                 string           `json:"registryId"`
	RepositoryName             string           `json:"repositoryName"`
	RepositoryURI              string           `json:"repositoryUri"`
	CreatedAt                  epochTime        `json:"createdAt"`
	ImageTagMutability         string           `json:"imageTagMutability"`
	ImageScanningConfiguration scanningConfig   `json:"imageScanningConfiguration"`
	EncryptionConfiguration    encryptionConfig `json:"encryptionConfiguration"`
}

func ecrError(w http.ResponseWriter, e *APIError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.Type, "message": e.Message})
}

func invalidParam(msg string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: "InvalidParameterException", Message: msg}
}

func (r *Registry) repoNotFound(name string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: "RepositoryNotFoundException", Message: fmt.Sprintf(
		"The repository with name '%s' does not exist in the registry with id '%s'", name, r.registryID)}
}

func (r *Registry) serveECR(w http.ResponseWriter, req *http.Request) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	w.Header().Set("X-Amzn-RequestId", hex.EncodeToString(id[:]))

	target := req.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if req.Method != http.MethodPost || !ok {
		ecrError(w, &APIError{Status: http.StatusBadRequest, Type: "UnknownOperationException", Message: "unknown operation " + target})
		return
	}
	handlers := map[string]func(body []byte, host string) (any, *APIError){
		"BatchGetImage":         r.batchGetImage,
		"DescribeImages":        r.describeImages,
		"DescribeRepositories":  r.describeRepositories,
		"CreateRepository":      r.createRepository,
		"GetAuthorizationToken": r.getAuthorizationToken,
	}
	h, ok := handlers[op]
	if !ok {
		ecrError(w, &APIError{Status: http.StatusBadRequest, Type: "UnknownOperationException", Message: "operation not supported locally: " + op})
		return
	}
	r.mu.Lock()
	fault := r.faults[op]
	if fault == nil {
		fault = r.faults["*"]
	}
	r.mu.Unlock()
	if fault != nil {
		var ae *APIError
		if !errors.As(fault, &ae) {
			ae = &APIError{Status: http.StatusInternalServerError, Type: "ServerException", Message: fault.Error()}
		}
		ecrError(w, ae)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		ecrError(w, &APIError{Status: http.StatusBadRequest, Type: "SerializationException", Message: err.Error()})
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	out, aerr := h(body, req.Host)
	if aerr != nil {
		ecrError(w, aerr)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		ecrError(w, &APIError{Status: http.StatusInternalServerError, Type: "ServerException", Message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func decode(body []byte, v any) *APIError {
	if err := json.Unmarshal(body, v); err != nil {
		return &APIError{Status: http.StatusBadRequest, Type: "SerializationException", Message: err.Error()}
	}
	return nil
}

// lookupRepo checks registryId and the repository name and finds the
// repository; r.mu must be held.
func (r *Registry) lookupRepo(registryID, name string) (*repo, *APIError) {
	if !validRepoName(name) {
		return nil, invalidParam(fmt.Sprintf("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '%s''", repoNameRE.String()))
	}
	rp := r.repos[name]
	if rp == nil || (registryID != "" && registryID != r.registryID) {
		return nil, r.repoNotFound(name)
	}
	return rp, nil
}

// resolve finds the image an imageId names; r.mu must be held. It returns
// the image or an ECR failure code and reason.
func (rp *repo) resolve(id imageID) (*image, string, string) {
	switch {
	case id.ImageDigest == "" && id.ImageTag == "":
		return nil, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null"
	case id.ImageDigest != "" && !digestRE.MatchString(id.ImageDigest):
		return nil, "InvalidImageDigest", "Invalid image digest"
	case id.ImageTag != "" && !tagRE.MatchString(id.ImageTag):
		return nil, "InvalidImageTag", "Invalid image tag"
	}
	digest := id.ImageDigest
	if id.ImageTag != "" {
		d, ok := rp.tags[id.ImageTag]
		if !ok {
			return nil, "ImageNotFound", "Requested image not found"
		}
		if digest != "" && d != digest {
			return nil, "ImageTagDoesNotMatchDigest", "Invalid request parameters: image tag and digest do not match"
		}
		digest = d
	}
	img := rp.images[digest]
	if img == nil {
		return nil, "ImageNotFound", "Requested image not found"
	}
	return img, "", ""
}

type batchGetImageInput struct {
	RegistryID         string    `json:"registryId"`
	RepositoryName     string    `json:"repositoryName"`
	ImageIDs           []imageID `json:"imageIds"`
	AcceptedMediaTypes []string  `json:"acceptedMediaTypes"`
}

type imageJSON struct {
	RegistryID             string  `json:"registryId"`
	RepositoryName         string  `json:"repositoryName"`
	ImageID                imageID `json:"imageId"`
	ImageManifest          string  `json:"imageManifest"`
	ImageManifestMediaType string  `json:"imageManifestMediaType"`
}

type imageFailure struct {
	ImageID       imageID `json:"imageId"`
	FailureCode   string  `json:"failureCode"`
	FailureReason string  `json:"failureReason"`
}

// batchGetImage returns each manifest's own bytes and media type, read
// from the OCI store. ECR converts Docker v2 manifests to schema 1 when only
// schema 1 is accepted; this registry never converts: an image whose media
// type is not among acceptedMediaTypes (when given) is an ImageNotFound
// failure saying so.
func (r *Registry) batchGetImage(body []byte, _ string) (any, *APIError) {
	var in batchGetImageInput
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if len(in.ImageIDs) == 0 || len(in.ImageIDs) > 100 {
		return nil, invalidParam("Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length between 1 and 100'")
	}
	type want struct {
		id     imageID
		digest string
		mt     string
	}
	var wants []want
	out := struct {
		Images   []imageJSON    `json:"images"`
		Failures []imageFailure `json:"failures"`
	}{Images: []imageJSON{}, Failures: []imageFailure{}}

	r.mu.Lock()
	rp, aerr := r.lookupRepo(in.RegistryID, in.RepositoryName)
	if aerr != nil {
		r.mu.Unlock()
		return nil, aerr
	}
	for _, id := range in.ImageIDs {
		img, code, reason := rp.resolve(id)
		if img == nil {
			out.Failures = append(out.Failures, imageFailure{ImageID: id, FailureCode: code, FailureReason: reason})
			continue
		}
		if len(in.AcceptedMediaTypes) > 0 && !slices.Contains(in.AcceptedMediaTypes, img.mediaType) {
			out.Failures = append(out.Failures, imageFailure{ImageID: id, FailureCode: "ImageNotFound",
				FailureReason: fmt.Sprintf("Requested image not found: media type %s is not among the accepted media types", img.mediaType)})
			continue
		}
		wants = append(wants, want{id: id, digest: img.digest, mt: img.mediaType})
	}
	r.mu.Unlock()

	for _, w := range wants {
		b, _, ok := r.manifestBytes(in.RepositoryName, w.digest)
		if !ok { // deleted meanwhile
			out.Failures = append(out.Failures, imageFailure{ImageID: w.id, FailureCode: "ImageNotFound", FailureReason: "Requested image not found"})
			continue
		}
		id := w.id
		id.ImageDigest = w.digest
		out.Images = append(out.Images, imageJSON{
			RegistryID: r.registryID, RepositoryName: in.RepositoryName, ImageID: id,
			ImageManifest: string(b), ImageManifestMediaType: w.mt,
		})
	}
	return out, nil
}

type imageDetailJSON struct {
	RegistryID             string    `json:"registryId"`
	RepositoryName         string    `json:"repositoryName"`
	ImageDigest            string    `json:"imageDigest"`
	ImageTags              []string  `json:"imageTags,omitempty"`
	ImageSizeInBytes       int64     `json:"imageSizeInBytes"`
	ImagePushedAt          epochTime `json:"imagePushedAt"`
	ImageManifestMediaType string    `json:"imageManifestMediaType"`
	ArtifactMediaType      string    `json:"artifactMediaType,omitempty"`
	SubjectManifestDigest  string    `json:"subjectManifestDigest,omitempty"`
	ImageStatus            string    `json:"imageStatus"`
}

// page applies maxResults/nextToken (an offset) to n items.
func page(n int, maxResults *int, nextToken string) (lo, hi int, next string, e *APIError) {
	limit := 100
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > 1000 {
			return 0, 0, "", invalidParam("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'")
		}
		limit = *maxResults
	}
	if nextToken != "" {
		v, err := strconv.Atoi(nextToken)
		if err != nil || v < 0 || v > n {
			return 0, 0, "", invalidParam("Invalid parameter at 'nextToken'")
		}
		lo = v
	}
	hi = min(lo+limit, n)
	if hi < n {
		next = strconv.Itoa(hi)
	}
	return lo, hi, next, nil
}

func (r *Registry) describeImages(body []byte, _ string) (any, *APIError) {
	var in struct {
		RegistryID     string    `json:"registryId"`
		RepositoryName string    `json:"repositoryName"`
		ImageIDs       []imageID `json:"imageIds"`
		NextToken      string    `json:"nextToken"`
		MaxResults     *int      `json:"maxResults"`
		Filter         *struct {
			TagStatus string `json:"tagStatus"`
		} `json:"filter"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, aerr := r.lookupRepo(in.RegistryID, in.RepositoryName)
	if aerr != nil {
		return nil, aerr
	}
	var imgs []*image
	if len(in.ImageIDs) > 0 {
		if in.MaxResults != nil || in.NextToken != "" {
			return nil, invalidParam("maxResults and nextToken cannot be used with imageIds")
		}
		for _, id := range in.ImageIDs {
			img, code, reason := rp.resolve(id)
			switch {
			case code == "ImageNotFound":
				return nil, &APIError{Status: http.StatusBadRequest, Type: "ImageNotFoundException", Message: fmt.Sprintf(
					"The image with imageId %s does not exist within the repository with name '%s' in the registry with id '%s'",
					id, rp.name, r.registryID)}
			case img == nil:
				return nil, invalidParam(reason)
			case !slices.Contains(imgs, img):
				imgs = append(imgs, img)
			}
		}
	} else {
		status := "ANY"
		if in.Filter != nil && in.Filter.TagStatus != "" {
			status = in.Filter.TagStatus
		}
		if status != "ANY" && status != "TAGGED" && status != "UNTAGGED" {
			return nil, invalidParam("Invalid parameter at 'filter.tagStatus'")
		}
		for _, img := range rp.images {
			if (status == "TAGGED" && len(img.tags) == 0) || (status == "UNTAGGED" && len(img.tags) > 0) {
				continue
			}
			imgs = append(imgs, img)
		}
		sort.Slice(imgs, func(i, j int) bool {
			if !imgs[i].pushedAt.Equal(imgs[j].pushedAt) {
				return imgs[i].pushedAt.Before(imgs[j].pushedAt)
			}
			return imgs[i].digest < imgs[j].digest
		})
	}
	lo, hi, next, e := page(len(imgs), in.MaxResults, in.NextToken)
	if e != nil {
		return nil, e
	}
	out := struct {
		ImageDetails []imageDetailJSON `json:"imageDetails"`
		NextToken    string            `json:"nextToken,omitempty"`
	}{ImageDetails: []imageDetailJSON{}, NextToken: next}
	for _, img := range imgs[lo:hi] {
		out.ImageDetails = append(out.ImageDetails, imageDetailJSON{
			RegistryID: r.registryID, RepositoryName: rp.name, ImageDigest: img.digest,
			ImageTags: slices.Clone(img.tags), ImageSizeInBytes: img.size, ImagePushedAt: epochTime(img.pushedAt),
			ImageManifestMediaType: img.mediaType, ArtifactMediaType: img.artifactMediaType,
			SubjectManifestDigest: img.subject, ImageStatus: "ACTIVE",
		})
	}
	return out, nil
}

// repoJSON renders a repository; the URI uses the host the client reached.
func (r *Registry) repoJSON(rp *repo, host string) repositoryJSON {
	return repositoryJSON{
		RepositoryArn:  fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", r.region, r.registryID, rp.name),
		RegistryID:     r.registryID,
		RepositoryName: rp.name,
		RepositoryURI:  host + "/" + rp.name,
		CreatedAt:      epochTime(rp.createdAt),

		ImageTagMutability:         rp.mutability,
		ImageScanningConfiguration: scanningConfig{ScanOnPush: rp.scanOnPush},
		EncryptionConfiguration:    encryptionConfig{EncryptionType: rp.encType, KmsKey: rp.kmsKey},
	}
}

func (r *Registry) describeRepositories(body []byte, host string) (any, *APIError) {
	var in struct {
		RegistryID      string   `json:"registryId"`
		RepositoryNames []string `json:"repositoryNames"`
		NextToken       string   `json:"nextToken"`
		MaxResults      *int     `json:"maxResults"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var repos []*repo
	if len(in.RepositoryNames) > 0 {
		if in.MaxResults != nil || in.NextToken != "" {
			return nil, invalidParam("maxResults and nextToken cannot be used with repositoryNames")
		}
		for _, n := range in.RepositoryNames {
			rp, aerr := r.lookupRepo(in.RegistryID, n)
			if aerr != nil {
				return nil, aerr
			}
			repos = append(repos, rp)
		}
	} else if in.RegistryID == "" || in.RegistryID == r.registryID {
		for _, rp := range r.repos {
			repos = append(repos, rp)
		}
		sort.Slice(repos, func(i, j int) bool { return repos[i].name < repos[j].name })
	}
	lo, hi, next, e := page(len(repos), in.MaxResults, in.NextToken)
	if e != nil {
		return nil, e
	}
	out := struct {
		Repositories []repositoryJSON `json:"repositories"`
		NextToken    string           `json:"nextToken,omitempty"`
	}{Repositories: []repositoryJSON{}, NextToken: next}
	for _, rp := range repos[lo:hi] {
		out.Repositories = append(out.Repositories, r.repoJSON(rp, host))
	}
	return out, nil
}

func (r *Registry) createRepository(body []byte, host string) (any, *APIError) {
	var in struct {
		RegistryID                 string            `json:"registryId"`
		RepositoryName             string            `json:"repositoryName"`
		ImageTagMutability         string            `json:"imageTagMutability"`
		ImageScanningConfiguration *scanningConfig   `json:"imageScanningConfiguration"`
		EncryptionConfiguration    *encryptionConfig `json:"encryptionConfiguration"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if !validRepoName(in.RepositoryName) {
		return nil, invalidParam(fmt.Sprintf("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '%s''", repoNameRE.String()))
	}
	if in.RegistryID != "" && in.RegistryID != r.registryID {
		return nil, invalidParam(fmt.Sprintf("registryId '%s' is not this registry ('%s')", in.RegistryID, r.registryID))
	}
	rp := &repo{
		name: in.RepositoryName, mutability: "MUTABLE", encType: "AES256",
		images: map[string]*image{}, tags: map[string]string{},
	}
	switch in.ImageTagMutability {
	case "":
	case "MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION":
		rp.mutability = in.ImageTagMutability
	default:
		return nil, invalidParam("Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, MUTABLE_WITH_EXCLUSION, IMMUTABLE_WITH_EXCLUSION]'")
	}
	if in.ImageScanningConfiguration != nil {
		rp.scanOnPush = in.ImageScanningConfiguration.ScanOnPush
	}
	if ec := in.EncryptionConfiguration; ec != nil {
		switch ec.EncryptionType {
		case "AES256":
			if ec.KmsKey != "" {
				return nil, invalidParam("Invalid parameter: kmsKey can only be specified when encryptionType is KMS or KMS_DSSE")
			}
		case "KMS", "KMS_DSSE":
			rp.kmsKey = ec.KmsKey
			if rp.kmsKey == "" {
				rp.kmsKey = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/ecr", r.region, r.registryID)
			}
		default:
			return nil, invalidParam("Invalid parameter at 'encryptionConfiguration.encryptionType' failed to satisfy constraint: 'Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]'")
		}
		rp.encType = ec.EncryptionType
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repos[rp.name] != nil {
		return nil, &APIError{Status: http.StatusBadRequest, Type: "RepositoryAlreadyExistsException", Message: fmt.Sprintf(
			"The repository with name '%s' already exists in the registry with id '%s'", rp.name, r.registryID)}
	}
	rp.createdAt = r.now().UTC()
	r.repos[rp.name] = rp
	r.record(journalEntry{Op: "create", Repo: rp.name, Body: body})
	return struct {
		Repository repositoryJSON `json:"repository"`
	}{r.repoJSON(rp, host)}, nil
}

// getAuthorizationToken answers what registry clients (the verifier's
// signature reads) ask ECR for before calling the registry API. The local
// registry does not check credentials, so the token is a fixed "AWS:local".
func (r *Registry) getAuthorizationToken(_ []byte, host string) (any, *APIError) {
	return map[string]any{"authorizationData": []map[string]any{{
		"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:local")),
		"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
		"proxyEndpoint":      "http://" + host,
	}}}, nil
}
