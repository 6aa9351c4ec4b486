#include "routes.h"

#include <string.h>

static const serve_route routes[] = {
    {"/v1/completions", "POST", serve_route_completions, true},
    {"/v1/chat/completions", "POST", serve_route_chat, true},
    {"/v1/models", "GET", serve_route_models, false},
    {"/health", "GET", serve_route_health, false},
    {"/metrics", "GET", serve_route_metrics, true},
    {"/tokenize", "POST", serve_route_tokenize, true},
    {"/detokenize", "POST", serve_route_detokenize, true},
};

const serve_route *serve_route_find(const char *path) {
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
    if (strcmp(routes[i].path, path) == 0) return &routes[i];
  return NULL;
}
