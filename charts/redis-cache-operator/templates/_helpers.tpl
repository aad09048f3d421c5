{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "rco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. The metrics Service appends "-metrics", so keep
room for it under 63 characters.
*/}}
{{- define "rco.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rco.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "rco.labels" -}}
helm.sh/chart: {{ include "rco.chart" . }}
{{ include "rco.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: redis-cache-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rco.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rco.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rco.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rco.metricsServiceName" -}}
{{- printf "%s-metrics" (include "rco.fullname" .) }}
{{- end }}

{{- define "rco.leaseName" -}}
{{- default (include "rco.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "rco.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The Kubernetes RBAC rules the operator needs: files/rbac-rules.json, a copy of
`redis-cache-operator rbac` (the single source of truth; tests/chart checks the
rendered roles against the binary). Split into
  - "lease": the leader-election rules on Leases, which only ever apply to the
    release namespace;
  - "cluster": rules on cluster-scoped resources (RedisCacheClasses and their
    subresources, Namespaces), which a namespaced Role cannot grant, so they
    are always in a ClusterRole. Which custom resources are cluster-scoped is
    read from the CRDs in crds/ (spec.scope: Cluster);
  - "watch": everything else, granted on the watched namespaces (or
    cluster-wide).
A rule that mixes kinds fails the render: keep them in separate rules.
*/}}
{{- define "rco.rules" -}}
{{- $clusterScoped := list "/namespaces" }}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" }}
{{- $crd := $.Files.Get $path | fromYaml }}
{{- if eq (dig "spec" "scope" "" $crd) "Cluster" }}
{{- $clusterScoped = append $clusterScoped (printf "%s/%s" $crd.spec.group $crd.spec.names.plural) }}
{{- end }}
{{- end }}
{{- $watch := list }}
{{- $lease := list }}
{{- $cluster := list }}
{{- range $rule := (.Files.Get "files/rbac-rules.json" | fromJsonArray) }}
{{- $kinds := dict }}
{{- range $resource := $rule.resources }}
{{- $base := first (splitList "/" $resource) }}
{{- $kind := "watch" }}
{{- if eq $base "leases" }}
{{- $kind = "lease" }}
{{- else }}
{{- range $group := $rule.apiGroups }}
{{- if has (printf "%s/%s" $group $base) $clusterScoped }}{{ $kind = "cluster" }}{{ end }}
{{- end }}
{{- end }}
{{- $_ := set $kinds $kind true }}
{{- end }}
{{- if gt (len $kinds) 1 }}
{{- fail (printf "files/rbac-rules.json: the rule on %s mixes %s resources; keep leases, cluster-scoped and namespaced resources in separate rules" (join ", " $rule.resources) (join " and " (keys $kinds | sortAlpha))) }}
{{- end }}
{{- if hasKey $kinds "lease" }}
{{- $lease = append $lease $rule }}
{{- else if hasKey $kinds "cluster" }}
{{- $cluster = append $cluster $rule }}
{{- else }}
{{- $watch = append $watch $rule }}
{{- end }}
{{- end }}
{{- toJson (dict "watch" $watch "lease" $lease "cluster" $cluster) }}
{{- end }}

{{/*
The operator's environment: one variable per `redis-cache-operator run` flag
(POD_NAME and POD_NAMESPACE come from the downward API in the Deployment).
Region, network placement and cache defaults are not flags: they are in the
RedisCacheClass (defaultclass.yaml).
Optional values that are empty are left out rather than set to "", because the
operator would read an empty variable as an empty value (or one empty list
item) instead of "unset". Lists are joined with commas.
*/}}
{{- define "rco.env" -}}
{{- $v := .Values }}
{{- $env := list }}
{{- $env = append $env (dict "name" "CLUSTER_NAME" "value" (toString $v.clusterName)) }}
{{- with $v.aws.endpointUrl }}{{ $env = append $env (dict "name" "AWS_ENDPOINT_URL" "value" (toString .)) }}{{ end }}
{{- $env = append $env (dict "name" "AWS_RATE_LIMIT" "value" (toString $v.aws.rateLimit)) }}
{{- $env = append $env (dict "name" "AWS_BURST" "value" (toString (int $v.aws.burst))) }}
{{- $env = append $env (dict "name" "AWS_COMPANION_REFRESH" "value" (toString $v.aws.companionRefresh)) }}
{{- $env = append $env (dict "name" "AWS_PARAMETER_RECHECK" "value" (toString $v.aws.parameterRecheck)) }}
{{- with $v.watchNamespaces }}{{ $env = append $env (dict "name" "WATCH_NAMESPACES" "value" (join "," (uniq .))) }}{{ end }}
{{- $env = append $env (dict "name" "CONCURRENCY" "value" (toString (int $v.concurrency))) }}
{{- $env = append $env (dict "name" "POLL_INTERVAL_TRANSITION" "value" (toString $v.pollInterval.transition)) }}
{{- $env = append $env (dict "name" "POLL_INTERVAL_SETTLED" "value" (toString $v.pollInterval.settled)) }}
{{- $env = append $env (dict "name" "SHUTDOWN_TIMEOUT" "value" (toString $v.shutdownTimeout)) }}
{{- $env = append $env (dict "name" "HEALTH_PROBE" "value" (toString $v.healthProbe.enabled)) }}
{{- $env = append $env (dict "name" "HEALTH_INTERVAL" "value" (toString $v.healthProbe.interval)) }}
{{- $env = append $env (dict "name" "HEALTH_TIMEOUT" "value" (toString $v.healthProbe.timeout)) }}
{{- $env = append $env (dict "name" "HEALTH_CONCURRENCY" "value" (toString (int $v.healthProbe.concurrency))) }}
{{- $env = append $env (dict "name" "HEALTH_STATUS_MIN_INTERVAL" "value" (toString $v.healthProbe.statusMinInterval)) }}
{{- with $v.healthProbe.ca.configMap }}{{ $env = append $env (dict "name" "HEALTH_CA_FILE" "value" (printf "%s/%s" (include "rco.healthCaDir" $) $v.healthProbe.ca.key)) }}{{ end }}
{{- $env = append $env (dict "name" "LEADER_ELECTION" "value" (toString $v.leaderElection.enabled)) }}
{{- $env = append $env (dict "name" "LEASE_NAME" "value" (include "rco.leaseName" .)) }}
{{- $env = append $env (dict "name" "HTTP_ADDR" "value" (include "rco.httpAddr" .)) }}
{{- $env = append $env (dict "name" "LOG_FORMAT" "value" (toString $v.logging.format)) }}
{{- $env = append $env (dict "name" "LOG_LEVEL" "value" (toString $v.logging.level)) }}
{{- toJson $env }}
{{- end }}

{{/*
Checks on values that the schema cannot express.
*/}}
{{- define "rco.validate" -}}
{{- $class := .Values.defaultClass }}
{{- if $class.create }}
{{- $provider := toString $class.provider }}
{{- if not (has $provider (list "Kubernetes" "ElastiCache")) }}
{{- fail (printf "defaultClass.provider %q cannot be rendered by the chart: use Kubernetes or ElastiCache. Upstash and Azure classes need credentials; set defaultClass.create=false and create the class yourself (examples/classes/)" $provider) }}
{{- end }}
{{- if eq $provider "ElastiCache" }}
{{- $ec := $class.elastiCache | default dict }}
{{- if not $ec.region }}
{{- fail "defaultClass.elastiCache.region is required with defaultClass.provider=ElastiCache: the AWS region of the default RedisCacheClass's caches, e.g. --set defaultClass.elastiCache.region=eu-west-1 (or use defaultClass.provider=Kubernetes, or set defaultClass.create=false and create a RedisCacheClass yourself)" }}
{{- end }}
{{- if and $ec.subnetGroupName $ec.subnetIds }}
{{- fail "defaultClass.elastiCache: set subnetGroupName or subnetIds, not both" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without a leader, replicas would reconcile the same caches at once" }}
{{- end }}
{{- end }}

{{/*
Where the health probe's CA ConfigMap is mounted.
*/}}
{{- define "rco.healthCaDir" -}}
/etc/redis-cache-operator/health-ca
{{- end }}

{{- define "rco.httpAddr" -}}
{{- $addr := .Values.http.bindAddress }}
{{- if contains ":" $addr }}
{{- printf "[%s]:%d" $addr (int .Values.http.port) }}
{{- else }}
{{- printf "%s:%d" $addr (int .Values.http.port) }}
{{- end }}
{{- end }}
