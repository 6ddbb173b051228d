// A Confluent-compatible Schema Registry for tests and local runs: Conduit's schema registry
// (github.com/conduitio/conduit-schema-registry, Apache-2.0) over an in-memory store, served on
// loopback. It implements the REST calls a schema registration needs (POST
// /subjects/{subject}/versions, GET /schemas/ids/{id}, GET /subjects/{subject}/versions/...),
// assigns ids from 1 in registration order and answers the same id for the same schema. No
// compatibility checks and no IMPORT mode: those are Confluent's, not tested here.
//
// Usage: schema-registry [-listen 127.0.0.1:0] [-port-file PATH]
// Prints "listening on http://HOST:PORT" once it accepts connections; with -port-file also writes
// the URL there (how tests find a free port).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/conduitio/conduit-commons/database/inmemory"
	schemaregistry "github.com/conduitio/conduit-schema-registry"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the registry's URL to this file once listening")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	registry, err := schemaregistry.NewSchemaRegistry(&inmemory.DB{})
	if err != nil {
		logger.Error("cannot create the registry", "error", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	schemaregistry.NewServer(logger, registry).RegisterHandlers(mux)

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Error("cannot listen", "address", *listen, "error", err)
		os.Exit(1)
	}
	url := "http://" + listener.Addr().String()
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(url+"\n"), 0o600); err != nil {
			logger.Error("cannot write the port file", "error", err)
			os.Exit(1)
		}
	}
	fmt.Println("listening on " + url)

	server := &http.Server{Handler: mux}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		_ = server.Shutdown(context.Background())
	}()
	if err := server.Serve(listener); err != nil && err != http.ErrServerClosed {
		logger.Error("serving failed", "error", err)
		os.Exit(1)
	}
}
