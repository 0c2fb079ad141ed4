package cloud

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// LambdaHandler is a function's handler as lambda.Start would call it.
type LambdaHandler func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// Route is a template route bound to its function.
type boundRoute struct {
	samtemplate.Route
	segments []string
	handler  LambdaHandler
	auth     *Authorizer // nil: open route
}

// Gateway emulates an API Gateway HTTP API (payload format 2.0) in front of
// in-process handlers: routing from the template, the JWT authorizer, the
// event and response mapping.
type Gateway struct {
	routes []*boundRoute
	log    *slog.Logger
	now    func() time.Time
}

// maxPayload is API Gateway's request payload limit.
const maxPayload = 10 << 20

// NewGateway binds every template route to handlers[LogicalID]. auth is
// used on routes the template authorizes with a JWT authorizer.
func NewGateway(tmpl *samtemplate.Template, handlers map[string]LambdaHandler, auth func(*samtemplate.Authorizer) *Authorizer, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{log: log, now: time.Now}
	for _, r := range tmpl.Routes() {
		h, ok := handlers[r.LogicalID]
		if !ok {
			return nil, &missingHandler{r.LogicalID}
		}
		a, err := tmpl.RouteAuthorizer(r)
		if err != nil {
			return nil, err
		}
		br := &boundRoute{Route: r, segments: strings.Split(strings.Trim(r.Path, "/"), "/"), handler: h}
		if a != nil {
			br.auth = auth(a)
		}
		g.routes = append(g.routes, br)
	}
	// Literal segments beat parameters, as in API Gateway.
	sort.SliceStable(g.routes, func(i, j int) bool { return specificity(g.routes[i]) > specificity(g.routes[j]) })
	return g, nil
}

type missingHandler struct{ id string }

func (m *missingHandler) Error() string { return "cloud.NewGateway: no handler for function " + m.id }

func specificity(r *boundRoute) int {
	n := 0
	for _, s := range r.segments {
		if !strings.HasPrefix(s, "{") {
			n++
		}
	}
	return n
}

func (r *boundRoute) match(method, path string) (map[string]string, bool) {
	if r.Method != method {
		return nil, false
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != len(r.segments) {
		return nil, false
	}
	params := map[string]string{}
	for i, s := range r.segments {
		if name, ok := strings.CutPrefix(s, "{"); ok {
			if parts[i] == "" {
				return nil, false
			}
			params[strings.TrimSuffix(name, "}")] = parts[i]
			continue
		}
		if s != parts[i] {
			return nil, false
		}
	}
	return params, true
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Apigw-Requestid", requestID())
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"message": msg})
	w.Write(b)
}

func requestID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b) + "="
}

// ServeHTTP implements the HTTP API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var route *boundRoute
	var params map[string]string
	for _, rt := range g.routes {
		if p, ok := rt.match(r.Method, r.URL.Path); ok {
			route, params = rt, p
			break
		}
	}
	if route == nil {
		writeMessage(w, http.StatusNotFound, "Not Found")
		return
	}
	var claims map[string]string
	if route.auth != nil {
		c, err := route.auth.Claims(r.Header.Get("Authorization"))
		if err != nil {
			writeMessage(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		claims = c
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "Bad Request")
		return
	}
	if len(body) > maxPayload {
		writeMessage(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	ev := g.event(r, route, params, claims, body)
	resp, err := route.handler(r.Context(), ev)
	if err != nil {
		g.log.Error("function error", "function", route.LogicalID, "error", err.Error())
		writeMessage(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	g.write(w, ev.RequestContext.RequestID, resp)
}

// event builds the payload 2.0 event as API Gateway does.
func (g *Gateway) event(r *http.Request, route *boundRoute, params map[string]string, claims map[string]string, body []byte) events.APIGatewayV2HTTPRequest {
	now := g.now()
	headers := map[string]string{}
	for k, vs := range r.Header {
		if strings.EqualFold(k, "Cookie") {
			continue
		}
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if r.Host != "" {
		headers["host"] = r.Host
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	var query map[string]string
	for k, vs := range r.URL.Query() {
		if query == nil {
			query = map[string]string{}
		}
		query[k] = strings.Join(vs, ",")
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: route.Method + " " + route.Path, RawPath: r.URL.Path, RawQueryString: r.URL.RawQuery,
		Cookies: cookies, Headers: headers, QueryStringParameters: query, PathParameters: params,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: route.Method + " " + route.Path, AccountID: "000000000000", Stage: "$default",
			RequestID: requestID(), APIID: "local", DomainName: r.Host, DomainPrefix: strings.Split(r.Host, ".")[0],
			Time: now.UTC().Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: r.Method, Path: r.URL.Path, Protocol: r.Proto, SourceIP: ip, UserAgent: r.UserAgent(),
			},
		},
	}
	if len(params) == 0 {
		ev.PathParameters = nil
	}
	if claims != nil {
		ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: claims, Scopes: nil},
		}
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			ev.Body = string(body)
		} else {
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
	}
	return ev
}

func (g *Gateway) write(w http.ResponseWriter, reqID string, resp events.APIGatewayV2HTTPResponse) {
	h := w.Header()
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for _, c := range resp.Cookies {
		h.Add("Set-Cookie", c)
	}
	h.Set("Apigw-Requestid", reqID)
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	w.Write(body)
}
