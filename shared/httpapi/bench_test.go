package httpapi_test

import (
	"fmt"
	"testing"
)

// Benchmarks run the real handlers against minidyn on loopback through the
// real SDK; they report DynamoDB round trips per request next to ns/op.
func benchRoute(b *testing.B, setup func(e *env) func(i int) req) {
	e := newEnv(b)
	e.skipContract = true
	next := setup(e)
	calls := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rq := next(i)
		b.StartTimer()
		r := e.do(rq)
		if r.status >= 300 {
			b.Fatalf("%d %s", r.status, r.body)
		}
		calls += e.lastCalls()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "ddb-calls/op")
}

func BenchmarkRegister(b *testing.B) {
	benchRoute(b, func(e *env) func(int) req {
		return func(i int) req {
			return req{route: "register-artifact", as: dev(projectA), body: registerBody(projectA, "bench-app", fmt.Sprint("b", i), digest(10_000_000+i))}
		}
	})
}

func BenchmarkPromote(b *testing.B) {
	benchRoute(b, func(e *env) func(int) req {
		ids := make([]string, 0, 1024)
		return func(i int) req {
			if i%2 == 0 {
				ids = append(ids, e.register(projectA))
			}
			ch := []string{"dev", "staging"}[i%2]
			return req{route: "promote-artifact", as: dev(projectA), artifact: ids[len(ids)-1], body: fmt.Sprintf(`{"channel":%q}`, ch)}
		}
	})
}

func BenchmarkReplay(b *testing.B) {
	benchRoute(b, func(e *env) func(int) req {
		id := e.register(projectA)
		r := req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`, idemKey: "bench-replay-key"}
		e.do(r)
		return func(int) req { return r }
	})
}

func BenchmarkGet(b *testing.B) {
	benchRoute(b, func(e *env) func(int) req {
		id := e.register(projectA)
		return func(int) req { return req{route: "get-artifact", as: viewer(projectA), artifact: id} }
	})
}

func BenchmarkListPage(b *testing.B) {
	benchRoute(b, func(e *env) func(int) req {
		for range 60 {
			e.register(projectA)
		}
		return func(int) req { return req{route: "list-artifacts", as: viewer(projectA)} }
	})
}
