package bus_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
)

// Events from the EventBridge user guide, used by several cases below.
const (
	// "Creating Amazon EventBridge event patterns" (eb-event-patterns).
	ec2Terminated = `{
	  "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
	  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
	  "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
	  "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
	  "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"}}`

	// "Content filtering", exists matching: the event the exists:true
	// example matches.
	ec2Pending = `{
	  "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
	  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
	  "account": "123456789012", "time": "2015-11-11T21:29:54Z", "region": "us-east-1",
	  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
	  "detail": {"instance-id": "i-abcd1111", "state": "pending"}}`

	// "Content filtering", exists matching: the event without detail.state,
	// whose c-count is not a leaf.
	ec2NoState = `{
	  "detail-type": "EC2 Instance State-change Notification",
	  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341"],
	  "detail": {"c-count": {"c1": 100}}}`

	// "Matching null values and empty strings" (eb-event-patterns-null-values).
	autoscalingNulls = `{
	  "version": "0", "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
	  "detail-type": "EC2 Instance Launch Successful", "source": "aws.autoscaling",
	  "account": "123456789012", "time": "2015-11-11T21:31:47Z", "region": "us-east-1",
	  "resources": [], "detail": {"eventVersion": "", "responseElements": null}}`

	// Amazon ECR user guide, "Amazon ECR events and EventBridge": the event
	// for a completed image push, with a repository under the platform prefix.
	ecrPush = `{
	  "version": "0", "id": "13cde686-328b-6117-af20-0e5566167482",
	  "detail-type": "ECR Image Action", "source": "aws.ecr",
	  "account": "123456789012", "time": "2019-11-16T01:54:34Z", "region": "us-west-2",
	  "resources": [],
	  "detail": {"result": "SUCCESS", "repository-name": "gpuaas/org-1/proj-1/web",
	    "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
	    "action-type": "PUSH", "image-tag": "latest"}}`

	// The project's ECR push rule (SPEC section 2).
	ecrPushRule = `{"source":["aws.ecr"],"detail-type":["ECR Image Action"],"detail":{"action-type":["PUSH"],"result":["SUCCESS"],"repository-name":[{"prefix":"gpuaas/"}]}}`

	// The project's custom-bus verifier rule (SPEC sections 7 and 8).
	verifierRule = `{"source":["gpuaas.app-artifacts"],"detail-type":["App Artifact Registered","App Artifact Verification Requested"]}`
)

// envelope is a minimal event with the given source, detail-type and detail.
func envelope(source, detailType, detail string) string {
	return `{"version":"0","id":"11710aed-b79e-4468-a20b-bb3c0c3b4860","detail-type":"` + detailType +
		`","source":"` + source + `","account":"123456789012","time":"2017-10-02T18:43:48Z","region":"us-east-1","resources":[],"detail":` + detail + `}`
}

func detail(d string) string { return envelope("com.example", "Example", d) }

func TestPatternMatches(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		event   string
		want    bool
	}{
		// "Creating Amazon EventBridge event patterns": the EC2 termination pattern.
		{"creating/ec2-terminated", `{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}`, ec2Terminated, true},
		{"creating/ec2-pending-not-terminated", `{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}`, ec2Pending, false},
		{"creating/field-absent-from-pattern-ignored", `{"source":["aws.ec2"]}`, ec2Terminated, true},
		{"creating/case-sensitive", `{"source":["AWS.EC2"]}`, ec2Terminated, false},

		// "Arrays in Amazon EventBridge event patterns": a pattern array matches
		// when it intersects the event array.
		{"arrays/intersection", `{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f","arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f","arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]}`,
			`{"source":"aws.autoscaling","resources":["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate","arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"],"detail":{}}`, true},
		{"arrays/no-intersection", `{"resources":["arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]}`,
			`{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"],"detail":{}}`, false},
		{"arrays/value-list-any", `{"detail":{"state":["terminated","stopping","stopped"]}}`, ec2Terminated, true},
		{"arrays/array-of-objects-one-element", `{"detail":{"items":{"k":["a"],"v":[1]}}}`, detail(`{"items":[{"k":"a","v":2},{"k":"b","v":1}]}`), false},
		{"arrays/array-of-objects-same-element", `{"detail":{"items":{"k":["b"],"v":[1]}}}`, detail(`{"items":[{"k":"a","v":2},{"k":"b","v":1}]}`), true},

		// "Matching null values and empty strings".
		{"null/empty-string", `{"detail":{"eventVersion":[""]}}`, autoscalingNulls, true},
		{"null/null", `{"detail":{"responseElements":[null]}}`, autoscalingNulls, true},
		{"null/empty-string-is-not-null", `{"detail":{"responseElements":[""]}}`, autoscalingNulls, false},
		{"null/null-is-not-empty-string", `{"detail":{"eventVersion":[null]}}`, autoscalingNulls, false},
		// "Matching events on event field values": field matching on null.
		{"field-values/null-with-source", `{"source":["aws.autoscaling"],"detail-type":["EC2 Instance Launch Successful"],"detail":{"responseElements":[null]}}`, autoscalingNulls, true},

		// "Content filtering", prefix matching.
		{"prefix/time", `{"time":[{"prefix":"2017-10-02"}]}`, envelope("a", "b", `{}`), true},
		{"prefix/time-other-day", `{"time":[{"prefix":"2017-10-02"}]}`, ec2Terminated, false},
		// Prefix matching example: Auto Scaling events from European regions.
		{"prefix/eu-regions", `{"source":["aws.autoscaling"],"region":[{"prefix":"eu-"}]}`, `{"source":"aws.autoscaling","region":"eu-west-1","detail":{}}`, true},
		{"prefix/eu-regions-us", `{"source":["aws.autoscaling"],"region":[{"prefix":"eu-"}]}`, autoscalingNulls, false},
		{"prefix/only-strings", `{"detail":{"n":[{"prefix":"1"}]}}`, detail(`{"n":12}`), false},
		// Prefix matching while ignoring case.
		{"prefix-ignore-case/EventB", `{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}`, detail(`{"service":"eventbridge"}`), true},
		{"prefix-ignore-case/EVENTB", `{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}`, detail(`{"service":"EVENTBRIDGE"}`), true},
		{"prefix-ignore-case/other", `{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}`, detail(`{"service":"sqs"}`), false},

		// "Content filtering", suffix matching.
		{"suffix/png", `{"detail":{"FileName":[{"suffix":".png"}]}}`, detail(`{"FileName":"image.png"}`), true},
		{"suffix/jpg", `{"detail":{"FileName":[{"suffix":".png"}]}}`, detail(`{"FileName":"image.jpg"}`), false},
		// Suffix matching while ignoring case.
		{"suffix-ignore-case/PNG", `{"detail":{"FileName":[{"suffix":{"equals-ignore-case":".png"}}]}}`, detail(`{"FileName":"IMAGE.PNG"}`), true},
		{"suffix-ignore-case/case-sensitive-without", `{"detail":{"FileName":[{"suffix":".png"}]}}`, detail(`{"FileName":"IMAGE.PNG"}`), false},

		// "Comparison operators": equals (ignore case), Name is "Alice".
		{"equals-ignore-case/alice", `{"detail":{"Name":[{"equals-ignore-case":"alice"}]}}`, detail(`{"Name":"Alice"}`), true},
		{"equals-ignore-case/bob", `{"detail":{"Name":[{"equals-ignore-case":"alice"}]}}`, detail(`{"Name":"Bob"}`), false},
		// "Comparison operators": empty, LastName is empty.
		{"empty/lastname", `{"detail":{"LastName":[""]}}`, detail(`{"LastName":""}`), true},

		// "Content filtering", anything-but matching: a string.
		{"anything-but/string-other", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, ec2Pending, true},
		{"anything-but/string-same", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, detail(`{"state":"initializing"}`), false},
		{"anything-but/needs-the-field", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, detail(`{"other":1}`), false},
		// a number.
		{"anything-but/number-other", `{"detail":{"x-limit":[{"anything-but":123}]}}`, detail(`{"x-limit":456}`), true},
		{"anything-but/number-same", `{"detail":{"x-limit":[{"anything-but":123}]}}`, detail(`{"x-limit":123}`), false},
		// a list of strings.
		{"anything-but/strings-other", `{"detail":{"state":[{"anything-but":["stopped","overloaded"]}]}}`, detail(`{"state":"running"}`), true},
		{"anything-but/strings-listed", `{"detail":{"state":[{"anything-but":["stopped","overloaded"]}]}}`, detail(`{"state":"overloaded"}`), false},
		// a list of numbers.
		{"anything-but/numbers-other", `{"detail":{"x-limit":[{"anything-but":[100,200,300]}]}}`, detail(`{"x-limit":150}`), true},
		{"anything-but/numbers-listed", `{"detail":{"x-limit":[{"anything-but":[100,200,300]}]}}`, detail(`{"x-limit":2e2}`), false},
		// with a prefix: state not starting with "init".
		{"anything-but-prefix/running", `{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}`, detail(`{"state":"running"}`), true},
		{"anything-but-prefix/initializing", `{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}`, detail(`{"state":"initializing"}`), false},
		// "Comparison operators": anything-but (begins with), Region is not in the US.
		{"anything-but-prefix/region-eu", `{"region":[{"anything-but":{"prefix":"us-"}}]}`, `{"region":"eu-west-1","detail":{}}`, true},
		{"anything-but-prefix/region-us", `{"region":[{"anything-but":{"prefix":"us-"}}]}`, ec2Terminated, false},
		// "Comparison operators": anything-but (ends with).
		{"anything-but-suffix/jpg", `{"detail":{"FileName":[{"anything-but":{"suffix":".png"}}]}}`, detail(`{"FileName":"a.jpg"}`), true},
		{"anything-but-suffix/png", `{"detail":{"FileName":[{"anything-but":{"suffix":".png"}}]}}`, detail(`{"FileName":"a.png"}`), false},
		// "Comparison operators": anything-but (ignore case).
		{"anything-but-ignore-case/INITIALIZING", `{"detail":{"state":[{"anything-but":{"equals-ignore-case":"initializing"}}]}}`, detail(`{"state":"INITIALIZING"}`), false},
		{"anything-but-ignore-case/running", `{"detail":{"state":[{"anything-but":{"equals-ignore-case":"initializing"}}]}}`, detail(`{"state":"running"}`), true},
		// "Comparison operators": anything-but using a wildcard.
		{"anything-but-wildcard/lib", `{"detail":{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}}`, detail(`{"FilePath":"/usr/lib/x.so"}`), false},
		{"anything-but-wildcard/bin", `{"detail":{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}}`, detail(`{"FilePath":"/usr/bin/x"}`), true},
		// "Comparison operators": wildcard, a .png file within the folder "dir".
		{"wildcard/dir-png", `{"detail":{"FileName":[{"wildcard":"dir/*.png"}]}}`, detail(`{"FileName":"dir/a/b.png"}`), true},
		{"wildcard/other-dir", `{"detail":{"FileName":[{"wildcard":"dir/*.png"}]}}`, detail(`{"FileName":"other/b.png"}`), false},
		{"wildcard/escaped-star", `{"detail":{"FileName":[{"wildcard":"a\\*b"}]}}`, detail(`{"FileName":"a*b"}`), true},
		{"wildcard/escaped-star-literal", `{"detail":{"FileName":[{"wildcard":"a\\*b"}]}}`, detail(`{"FileName":"axxb"}`), false},

		// "Content filtering", numeric matching: all three fields must hold.
		{"numeric/all-hold", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}`, detail(`{"c-count":5,"d-count":9.5,"x-limit":301.8}`), true},
		{"numeric/c-count-zero", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}`, detail(`{"c-count":0,"d-count":9,"x-limit":301.8}`), false},
		{"numeric/d-count-ten", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}`, detail(`{"c-count":1,"d-count":10,"x-limit":301.8}`), false},
		{"numeric/strings-are-not-numbers", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}]}}`, detail(`{"c-count":"5"}`), false},
		// "Comparison operators": numeric (equals), Price is 100; (range) more than 10 and at most 20.
		{"numeric/equals", `{"detail":{"Price":[{"numeric":["=",100]}]}}`, detail(`{"Price":100.0}`), true},
		{"numeric/range-in", `{"detail":{"Price":[{"numeric":[">",10,"<=",20]}]}}`, detail(`{"Price":20}`), true},
		{"numeric/range-out", `{"detail":{"Price":[{"numeric":[">",10,"<=",20]}]}}`, detail(`{"Price":10}`), false},
		// "Matching events on event field values", value matching: numbers
		// match by value.
		{"field-values/number", `{"detail":{"severity":{"score":[1]},"count":[2]}}`, detail(`{"severity":{"score":1,"description":"Low"},"count":2}`), true},

		// "Content filtering", IP address matching.
		{"cidr/in", `{"detail":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}}`, detail(`{"sourceIPAddress":"10.0.0.255"}`), true},
		{"cidr/out", `{"detail":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}}`, detail(`{"sourceIPAddress":"10.0.1.1"}`), false},
		{"cidr/ipv6", `{"detail":{"sourceIPAddress":[{"cidr":"2001:db8::/32"}]}}`, detail(`{"sourceIPAddress":"2001:db8::1"}`), true},

		// "Content filtering", exists matching.
		{"exists/true-present", `{"detail":{"state":[{"exists":true}]}}`, ec2Pending, true},
		{"exists/true-not-a-leaf", `{"detail":{"state":[{"exists":true}]}}`, ec2NoState, false},
		{"exists/false-absent", `{"detail":{"c-count":[{"exists":false}]}}`, ec2Pending, true},
		{"exists/false-not-a-leaf", `{"detail":{"c-count":[{"exists":false}]}}`, ec2NoState, true},
		{"exists/false-present", `{"detail":{"c-count":[{"exists":false}]}}`, detail(`{"c-count":5}`), false},
		{"exists/true-null", `{"detail":{"responseElements":[{"exists":true}]}}`, autoscalingNulls, true},

		// "Content filtering", complex example with multiple matching.
		{"complex/match", `{"time":[{"prefix":"2017-10-02"}],"detail":{"state":[{"anything-but":"initializing"}],"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"anything-but":[100,200,300]}]}}`,
			envelope("a", "b", `{"state":"running","c-count":3,"d-count":2,"x-limit":150}`), true},
		{"complex/x-limit-listed", `{"time":[{"prefix":"2017-10-02"}],"detail":{"state":[{"anything-but":"initializing"}],"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"anything-but":[100,200,300]}]}}`,
			envelope("a", "b", `{"state":"running","c-count":3,"d-count":2,"x-limit":200}`), false},
		// The note under the complex example: a repeated key keeps its last value.
		{"complex/repeated-key-last-wins", `{"detail":{"location":[{"prefix":"us-"}],"location":[{"anything-but":"us-east"}]}}`, detail(`{"location":"eu-west"}`), true},
		{"complex/repeated-key-last-wins-excluded", `{"detail":{"location":[{"prefix":"us-"}],"location":[{"anything-but":"us-east"}]}}`, detail(`{"location":"us-east"}`), false},

		// "Content filtering", $or matching: c-count, d-count or x-limit.
		{"or/nested-second", `{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]}}`, detail(`{"c-count":50,"d-count":3}`), true},
		{"or/nested-none", `{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]}}`, detail(`{"c-count":50,"d-count":30}`), false},
		// $or with a field outside it: source AND (metricName OR namespace).
		{"or/top-level", `{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization","ReadLatency"]},{"namespace":["AWS/EC2","AWS/ES"]}]}`, `{"source":"aws.cloudwatch","namespace":"AWS/ES","detail":{}}`, true},
		{"or/top-level-wrong-source", `{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization","ReadLatency"]},{"namespace":["AWS/EC2","AWS/ES"]}]}`, `{"source":"aws.ec2","namespace":"AWS/ES","detail":{}}`, false},
		// AWS User Notifications guide: EC2 state running or terminated with $or.
		{"or/state", `{"detail":{"$or":[{"state":["running"]},{"state":["terminated"]}]}}`, ec2Terminated, true},
		{"or/state-pending", `{"detail":{"$or":[{"state":["running"]},{"state":["terminated"]}]}}`, ec2Pending, false},

		// The project's ECR push rule on the default bus.
		{"project/ecr-push", ecrPushRule, ecrPush, true},
		{"project/ecr-push-other-repository", ecrPushRule, envelope("aws.ecr", "ECR Image Action", `{"result":"SUCCESS","repository-name":"other/web","action-type":"PUSH"}`), false},
		{"project/ecr-push-prefix-is-case-sensitive", ecrPushRule, envelope("aws.ecr", "ECR Image Action", `{"result":"SUCCESS","repository-name":"GPUAAS/x/y/web","action-type":"PUSH"}`), false},
		{"project/ecr-delete", ecrPushRule, envelope("aws.ecr", "ECR Image Action", `{"result":"SUCCESS","repository-name":"gpuaas/o/p/web","action-type":"DELETE"}`), false},
		{"project/ecr-push-failed", ecrPushRule, envelope("aws.ecr", "ECR Image Action", `{"result":"FAILURE","repository-name":"gpuaas/o/p/web","action-type":"PUSH"}`), false},
		{"project/ecr-push-wrong-source", ecrPushRule, envelope("gpuaas.app-artifacts", "ECR Image Action", `{"result":"SUCCESS","repository-name":"gpuaas/o/p/web","action-type":"PUSH"}`), false},
		{"project/ecr-push-no-repository", ecrPushRule, envelope("aws.ecr", "ECR Image Action", `{"result":"SUCCESS","action-type":"PUSH"}`), false},
		// The project's custom-bus verifier rule.
		{"project/registered", verifierRule, envelope("gpuaas.app-artifacts", "App Artifact Registered", `{"artifact_id":"a1"}`), true},
		{"project/verification-requested", verifierRule, envelope("gpuaas.app-artifacts", "App Artifact Verification Requested", `{"artifact_id":"a1"}`), true},
		{"project/promoted", verifierRule, envelope("gpuaas.app-artifacts", "App Artifact Promoted", `{"artifact_id":"a1"}`), false},
		{"project/other-source", verifierRule, envelope("gpuaas.other", "App Artifact Registered", `{"artifact_id":"a1"}`), false},

		// Events that are not JSON objects never match.
		{"event/malformed", `{"source":["a"]}`, `{"source":"a"`, false},
		{"event/not-an-object", `{"source":["a"]}`, `["a"]`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := bus.ParsePattern([]byte(tc.pattern))
			if err != nil {
				t.Fatalf("ParsePattern(%s): %v", tc.pattern, err)
			}
			got := p.Matches([]byte(tc.event))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Matches mismatch (-want +got):\n%s\npattern: %s\nevent: %s", diff, tc.pattern, tc.event)
			}
		})
	}
}

func TestParsePatternRejects(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
	}{
		// Leaf values must be arrays ("Creating event patterns": every value
		// in a pattern is in an array).
		{"leaf-string", `{"source":"aws.ecr"}`},
		{"leaf-number", `{"detail":{"n":5}}`},
		{"leaf-null", `{"detail":{"n":null}}`},
		{"not-an-object", `["aws.ecr"]`},
		{"empty-object", `{}`},
		{"empty-nested-object", `{"detail":{}}`},
		{"empty-array", `{"source":[]}`},
		{"nested-array", `{"source":[["aws.ecr"]]}`},
		{"malformed-json", `{"source":["aws.ecr"]`},
		{"trailing-data", `{"source":["aws.ecr"]} {}`},
		{"unknown-operator", `{"source":[{"starts-with":"aws."}]}`},
		{"two-operators", `{"source":[{"prefix":"aws.","suffix":"ecr"}]}`},
		{"empty-expression", `{"source":[{}]}`},
		{"prefix-not-string", `{"source":[{"prefix":5}]}`},
		{"prefix-list", `{"source":[{"prefix":["a","b"]}]}`},
		{"suffix-not-string", `{"source":[{"suffix":true}]}`},
		{"equals-ignore-case-number", `{"source":[{"equals-ignore-case":5}]}`},
		{"anything-but-mixed-list", `{"x":[{"anything-but":["a",1]}]}`},
		{"anything-but-empty-list", `{"x":[{"anything-but":[]}]}`},
		{"anything-but-null", `{"x":[{"anything-but":null}]}`},
		{"anything-but-bool-in-list", `{"x":[{"anything-but":[true]}]}`},
		{"anything-but-empty-prefix", `{"x":[{"anything-but":{"prefix":""}}]}`},
		// "Content filtering", anything-but: only a single prefix, not a list.
		{"anything-but-prefix-list", `{"x":[{"anything-but":{"prefix":["a","b"]}}]}`},
		{"anything-but-unknown", `{"x":[{"anything-but":{"numeric":[">",1]}}]}`},
		{"numeric-not-array", `{"x":[{"numeric":">"}]}`},
		{"numeric-missing-value", `{"x":[{"numeric":[">"]}]}`},
		{"numeric-string-value", `{"x":[{"numeric":["=","5"]}]}`},
		{"numeric-bad-operator", `{"x":[{"numeric":["!=",5]}]}`},
		{"numeric-upper-first", `{"x":[{"numeric":["<",1,">",0]}]}`},
		{"numeric-empty-range", `{"x":[{"numeric":[">",5,"<",1]}]}`},
		{"numeric-too-many", `{"x":[{"numeric":[">",0,"<",5,"<",6]}]}`},
		{"numeric-out-of-range", `{"x":[{"numeric":[">",1e10]}]}`},
		{"exists-not-bool", `{"x":[{"exists":"true"}]}`},
		{"cidr-bad", `{"x":[{"cidr":"10.0.0.0/33"}]}`},
		{"wildcard-consecutive-stars", `{"x":[{"wildcard":"a**b"}]}`},
		{"wildcard-bad-escape", `{"x":[{"wildcard":"a\\b"}]}`},
		// "$or" needs an array of at least two objects.
		{"or-one-object", `{"$or":[{"source":["a"]}]}`},
		{"or-not-array", `{"$or":{"source":["a"]}}`},
		{"or-not-objects", `{"$or":["a","b"]}`},
		{"or-bad-branch", `{"$or":[{"source":["a"]},{"source":"b"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := bus.ParsePattern([]byte(tc.pattern))
			if err == nil {
				t.Fatalf("ParsePattern(%s) = %v, want an error", tc.pattern, p)
			}
			if !errors.Is(err, bus.ErrInvalidPattern) {
				t.Errorf("error %v does not match ErrInvalidPattern", err)
			}
		})
	}
}

func TestParsePatternKeepsSource(t *testing.T) {
	p, err := bus.ParsePattern([]byte(ecrPushRule))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ecrPushRule, p.String()); diff != "" {
		t.Errorf("String mismatch (-want +got):\n%s", diff)
	}
}
