{{/*
Names, labels and the per-service facts every template shares.
*/}}

{{- define "facestream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "facestream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "facestream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>. Call with (list $ "detector"). */}}
{{- define "facestream.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "facestream.fullname" $root | trunc 40 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ "detector"). */}}
{{- define "facestream.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "facestream.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Standard labels of one component. Call with (list $ "detector"). */}}
{{- define "facestream.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "facestream.chart" $root }}
{{ include "facestream.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: facestream
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels every pod of the release carries (the default-deny policy selects on them). */}}
{{- define "facestream.releaseSelector" -}}
app.kubernetes.io/name: {{ include "facestream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The services. input: the topic (and consumer group) that measures a service's load and caps its
replicas; reads/writes: every topic it touches (for ACLs); scaleOn: lag or cpu.
*/}}
{{- define "facestream.services" -}}
frameSampler:
  name: frame-sampler
  input: cameras
  reads: [cameras, frames]  # frames: where a file camera it takes over stopped
  writes: [frames, dlq.frame-sampler]
  scaleOn: cpu
  models: false
detector:
  name: detector
  input: frames
  reads: [frames]
  writes: [faces, dlq.detector]
  scaleOn: lag
  models: true
embedder:
  name: embedder
  input: faces
  reads: [faces]
  writes: [embeddings, dlq.embedder]
  scaleOn: lag
  models: true
matcher:
  name: matcher
  input: embeddings
  reads: [embeddings, hits]
  writes: [hits, matches, episodes.ended, dlq.matcher, dlq.episodes, audit]
  scaleOn: lag
  models: false
review:
  name: review
  input: matches
  reads: [matches, reviews]
  writes: [reviews, alerts.confirmed, audit, dlq.review]
  scaleOn: lag
  models: false
{{- end -}}

{{/* The enabled services as a dict: key -> definition merged with its values under "values". */}}
{{- define "facestream.enabledServices" -}}
{{- $out := dict -}}
{{- range $key, $def := (include "facestream.services" . | fromYaml) -}}
{{- $vals := index $.Values $key -}}
{{- if $vals.enabled -}}
{{- $_ := set $out $key (merge (dict "values" $vals "key" $key) $def) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The max.message.bytes `facestream topics create` (the topic Job) gives every topic it creates: the
image's MAX_BATCH_BYTES (src/facestream/transport/topics.py; tests/helm keeps the two equal).
*/}}
{{- define "facestream.imageMaxMessageBytes" -}}10485760{{- end -}}

{{/* A topic's full name. Call with (list $ "frames"). */}}
{{- define "facestream.topic" -}}
{{- printf "%s%s" (index . 0).Values.kafka.topicPrefix (index . 1) -}}
{{- end -}}

{{/*
A service's consumer group: the code's default, <topicPrefix>facestream-<stage> (runtime/service.py
group_id; the review app's faust app id and changelog prefix too), unless consumerGroup names one.
Call with (list $ $svc).
*/}}
{{- define "facestream.consumerGroup" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 1 -}}
{{- default (printf "%sfacestream-%s" $root.Values.kafka.topicPrefix $svc.name) $svc.values.consumerGroup -}}
{{- end -}}

{{/* The episode step's faust app id (its consumer group and internal topic prefix). */}}
{{- define "facestream.episodesGroup" -}}
{{- default (printf "%sfacestream-episodes" .Values.kafka.topicPrefix) .Values.matcher.episodesGroup -}}
{{- end -}}

{{/* The (CPU) image reference every service runs. Call with $. */}}
{{- define "facestream.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
One service's (CPU) image: <service>.image.digest or .tag when set (an upgrade that rolls the services
one at a time, consumers before producers: docs/operations.md, Upgrades and rollback), else the
release's image. Call with (list $ "detector") (the values key).
*/}}
{{- define "facestream.serviceImage" -}}
{{- $root := index . 0 -}}
{{- $own := (index $root.Values (index . 1)).image | default dict -}}
{{- if $own.digest -}}
{{- printf "%s@%s" $root.Values.image.repository $own.digest -}}
{{- else if $own.tag -}}
{{- printf "%s:%s" $root.Values.image.repository $own.tag -}}
{{- else -}}
{{- include "facestream.image" $root -}}
{{- end -}}
{{- end -}}

{{/*
The GPU embedder's image: embedder.gpu.image.digest, else its tag, else the CPU image's tag
(embedder.image.tag, else image.tag, else appVersion) plus imageTagSuffix. A pinned CPU digest says
nothing about the GPU image, so with image.digest (or embedder.image.digest) and no GPU digest or tag
the chart fails rather than run the CPU image with the CUDA provider.
*/}}
{{- define "facestream.gpuImage" -}}
{{- $img := .Values.image -}}
{{- $own := .Values.embedder.image | default dict -}}
{{- $gpu := .Values.embedder.gpu -}}
{{- $g := $gpu.image | default dict -}}
{{- $repo := default $img.repository $g.repository -}}
{{- if $g.digest -}}
{{- printf "%s@%s" $repo $g.digest -}}
{{- else if $g.tag -}}
{{- printf "%s:%s" $repo $g.tag -}}
{{- else if or $img.digest $own.digest -}}
{{- fail "image.digest (or embedder.image.digest) pins the CPU image only: the GPU embedder (embedder.gpu.enabled) needs embedder.gpu.image.digest (or embedder.gpu.image.tag) of the image built with --build-arg EXTRAS=gpu" -}}
{{- else -}}
{{- printf "%s:%s%s" $repo (default (default .Chart.AppVersion $img.tag) $own.tag) $gpu.imageTagSuffix -}}
{{- end -}}
{{- end -}}

{{/*
The ports NetworkPolicies open to the brokers: every port of kafka.bootstrapServers, then
kafka.ports (brokers advertising other ports), each once, as integers.
*/}}
{{- define "facestream.kafkaPorts" -}}
{{- $ports := list -}}
{{- range splitList "," .Values.kafka.bootstrapServers -}}
{{- $ports = append $ports (int64 (last (splitList ":" (trim .)))) -}}
{{- end -}}
{{- range .Values.kafka.ports -}}
{{- $ports = append $ports (int64 .) -}}
{{- end -}}
{{- toJson (uniq $ports) -}}
{{- end -}}

{{/* The KafkaUser (and its Secret) of a service. Call with (list $ "detector"). */}}
{{- define "facestream.kafkaUser" -}}
{{- include "facestream.componentName" . -}}
{{- end -}}

{{- define "facestream.strimziUsers" -}}
{{- if and .Values.strimzi.enabled .Values.strimzi.users.enabled -}}true{{- end -}}
{{- end -}}

{{/* Kafka client environment of a service. Call with (list $ "detector"). */}}
{{- define "facestream.kafkaEnv" -}}
{{- $root := index . 0 -}}
{{- $k := $root.Values.kafka -}}
- name: FACESTREAM_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $k.bootstrapServers | quote }}
- name: FACESTREAM_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
- name: FACESTREAM_KAFKA_TOPIC_PREFIX
  value: {{ $k.topicPrefix | quote }}
- name: FACESTREAM_KAFKA_CLIENT_ID
  value: {{ printf "facestream-%s" (index . 1) | quote }}
{{- if contains "SASL" $k.securityProtocol }}
- name: FACESTREAM_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
{{- if include "facestream.strimziUsers" $root }}
- name: FACESTREAM_KAFKA_SASL_USERNAME
  value: {{ include "facestream.kafkaUser" . | quote }}
- name: FACESTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "facestream.kafkaUser" . }}
      key: password
{{- else }}
- name: FACESTREAM_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.usernameKey }}
- name: FACESTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.passwordKey }}
{{- end }}
{{- end }}
{{- if and (contains "SSL" $k.securityProtocol) $k.tls.caSecret }}
- name: FACESTREAM_KAFKA_SSL_CA_LOCATION
  value: {{ printf "/etc/facestream/kafka-ca/%s" $k.tls.caKey | quote }}
{{- end }}
{{- if include "facestream.kafkaClientCertSecret" . }}
- name: FACESTREAM_KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ printf "/etc/facestream/kafka-client/%s" (include "facestream.kafkaClientCertKey" $root) | quote }}
- name: FACESTREAM_KAFKA_SSL_KEY_LOCATION
  value: {{ printf "/etc/facestream/kafka-client/%s" (include "facestream.kafkaClientKeyKey" $root) | quote }}
{{- end }}
{{- end -}}

{{/* The Secret with a service's TLS client certificate ("" = none). Call with (list $ "detector"). */}}
{{- define "facestream.kafkaClientCertSecret" -}}
{{- $root := index . 0 -}}
{{- if contains "SSL" $root.Values.kafka.securityProtocol -}}
{{- if and (include "facestream.strimziUsers" $root) (eq $root.Values.strimzi.users.authentication "tls") -}}
{{- include "facestream.kafkaUser" . -}}
{{- else -}}
{{- $root.Values.kafka.tls.clientCertSecret -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "facestream.kafkaClientCertKey" -}}
{{- if and (include "facestream.strimziUsers" .) (eq .Values.strimzi.users.authentication "tls") }}user.crt{{ else }}tls.crt{{ end -}}
{{- end -}}

{{- define "facestream.kafkaClientKeyKey" -}}
{{- if and (include "facestream.strimziUsers" .) (eq .Values.strimzi.users.authentication "tls") }}user.key{{ else }}tls.key{{ end -}}
{{- end -}}

{{/* Volumes for the Kafka certificates. Call with (list $ "detector"). */}}
{{- define "facestream.kafkaVolumes" -}}
{{- $root := index . 0 -}}
{{- if and (contains "SSL" $root.Values.kafka.securityProtocol) $root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $root.Values.kafka.tls.caSecret }}
{{- end }}
{{- with include "facestream.kafkaClientCertSecret" . }}
- name: kafka-client
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "facestream.kafkaVolumeMounts" -}}
{{- $root := index . 0 -}}
{{- if and (contains "SSL" $root.Values.kafka.securityProtocol) $root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/facestream/kafka-ca
  readOnly: true
{{- end }}
{{- if include "facestream.kafkaClientCertSecret" . }}
- name: kafka-client
  mountPath: /etc/facestream/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* The gallery URI the matchers use. */}}
{{- define "facestream.galleryUri" -}}
{{- if .Values.milvus.enabled -}}
{{- printf "http://%s-milvus:19530" .Release.Name -}}
{{- else if eq .Values.gallery.mode "server" -}}
{{- printf "http://%s:%v" (include "facestream.componentName" (list . "gallery")) .Values.gallery.server.port -}}
{{- else -}}
{{- .Values.gallery.external.uri -}}
{{- end -}}
{{- end -}}

{{/* The gallery's index settings (GallerySettings), for every container that opens the gallery. */}}
{{- define "facestream.galleryIndexEnv" -}}
{{- $i := .Values.gallery.index -}}
- name: FACESTREAM_GALLERY_INDEX_TYPE
  value: {{ $i.type | quote }}
- name: FACESTREAM_GALLERY_HNSW_M
  value: {{ $i.hnswM | quote }}
- name: FACESTREAM_GALLERY_HNSW_EF_CONSTRUCTION
  value: {{ $i.hnswEfConstruction | quote }}
- name: FACESTREAM_GALLERY_SEARCH_EF
  value: {{ $i.searchEf | quote }}
- name: FACESTREAM_GALLERY_IVF_NLIST
  value: {{ $i.ivfNlist | quote }}
- name: FACESTREAM_GALLERY_IVF_NPROBE
  value: {{ $i.ivfNprobe | quote }}
{{- end -}}

{{/* Where the model files are inside the containers. */}}
{{- define "facestream.modelDir" -}}
{{- if eq .Values.models.source "image" -}}{{ .Values.models.imageDir }}{{- else -}}/models{{- end -}}
{{- end -}}

{{/* A NetworkPolicy egress rule: ports to peers (no peers = any address). Call with (dict "ports" .. "to" .. "protocol" ..). */}}
{{- define "facestream.egressRule" -}}
- ports:
  {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
  {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
The deployment's settings file (values `config`, docs/configuration.md): the ConfigMap
<fullname>-config, key facestream.yaml, mounted in every facestream container at
/etc/facestream/config with FACESTREAM_CONFIG naming the file. Nothing when `config` is empty.
*/}}
{{- define "facestream.configFile" -}}
{{- toYaml .Values.config -}}
{{- end -}}

{{- define "facestream.configMapName" -}}
{{- include "facestream.componentName" (list . "config") -}}
{{- end -}}

{{/* The topic Job's copy: a pre-install hook runs before the release's own ConfigMap exists. */}}
{{- define "facestream.configHookMapName" -}}
{{- include "facestream.componentName" (list . "topics-config") -}}
{{- end -}}

{{- define "facestream.configPath" -}}/etc/facestream/config/facestream.yaml{{- end -}}

{{- define "facestream.configEnv" -}}
{{- if .Values.config }}
- name: FACESTREAM_CONFIG
  value: {{ include "facestream.configPath" . | quote }}
{{- end }}
{{- end -}}

{{- define "facestream.configVolumeMount" -}}
{{- if .Values.config }}
- name: config
  mountPath: {{ include "facestream.configPath" . | dir }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The config volume. Call with (list $ <ConfigMap name>). */}}
{{- define "facestream.configVolume" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.config }}
- name: config
  configMap:
    name: {{ index . 1 }}
{{- end }}
{{- end -}}

{{/*
The sections of the file: one per settings model (config_file.settings_models; tests/helm keeps
the two equal).
*/}}
{{- define "facestream.configSections" -}}
[kafka, runtime, model, sampler, detector, embedder, gallery, matcher, accountability, photo, policy, audit, review]
{{- end -}}

{{/*
The secret settings (SecretStr in the code; tests/helm keeps the list complete), and the Secret
that gives each instead: a ConfigMap is readable by whoever may read the namespace's ConfigMaps,
and Helm keeps every revision's values in the release history.
*/}}
{{- define "facestream.configSecrets" -}}
kafka.sasl_password: kafka.sasl.existingSecret (or strimzi.users)
gallery.gallery_token: gallery.external.tokenSecret
photo.photo_key: accountability.photoKeySecret
audit.audit_key: accountability.auditKeySecret
{{- end -}}

{{/*
The settings the chart passes itself, as env vars, which win over the file: one given in `config`
would be silently ignored (tests/helm keeps the list complete: every env var the chart sets).
review_app_id is no env var of the chart, but the review app's group is review.consumerGroup, which
the ACLs, KEDA and `cluster status` use. Each names the chart value to set instead, or {fixed: what}
for a value the chart fixes.
*/}}
{{- define "facestream.configOwned" -}}
kafka.bootstrap_servers: kafka.bootstrapServers
kafka.security_protocol: kafka.securityProtocol
kafka.topic_prefix: kafka.topicPrefix
kafka.client_id: {fixed: "facestream-<service>, one per service"}
kafka.sasl_mechanism: kafka.sasl.mechanism
kafka.sasl_username: kafka.sasl.existingSecret (or strimzi.users)
kafka.ssl_ca_location: kafka.tls.caSecret
kafka.ssl_certificate_location: kafka.tls.clientCertSecret (or strimzi.users)
kafka.ssl_key_location: kafka.tls.clientCertSecret (or strimzi.users)
runtime.metrics_port: metricsPort
runtime.log_level: logLevel
runtime.log_format: logFormat
runtime.group_id: <service>.consumerGroup
model.model_dir: models.source
model.execution_provider: embedder.gpu.enabled
gallery.gallery: gallery.mode (and gallery.external.uri)
gallery.collection: gallery.collection
gallery.index_type: gallery.index.type
gallery.hnsw_m: gallery.index.hnswM
gallery.hnsw_ef_construction: gallery.index.hnswEfConstruction
gallery.search_ef: gallery.index.searchEf
gallery.ivf_nlist: gallery.index.ivfNlist
gallery.ivf_nprobe: gallery.index.ivfNprobe
matcher.episodes_app_id: matcher.episodesGroup
matcher.episodes_data_dir: {fixed: "/var/lib/facestream/episodes, in the pod's work volume"}
accountability.state_dir: accountability.stateClaimName
audit.audit_key_file: accountability.auditKeySecret (the chart mounts no key file)
policy.purge_interval_s: accountability.purgeIntervalSeconds
policy.cameras_file: accountability.camerasConfigMap
review.review_port: review.web.port
review.review_cookie_secure: review.web.cookieSecure
review.review_trusted_proxies: review.web.trustedProxies
review.review_behind_tls: review.web.behindTls
review.review_hsts_max_age_s: review.web.hstsMaxAgeSeconds
review.review_signin_window_s: review.web.signin.windowSeconds
review.review_signin_per_account_client: review.web.signin.perAccountClient
review.review_signin_per_client: review.web.signin.perClient
review.review_signin_per_account: review.web.signin.perAccount
review.review_sso_user_header: review.web.sso.userHeader
review.review_sso_groups_header: review.web.sso.groupsHeader
review.review_sso_reviewer_groups: review.web.sso.reviewerGroups
review.review_sso_logout_url: review.web.sso.logoutUrl
review.review_data_dir: {fixed: "/var/lib/facestream/review, in the pod's work volume"}
review.review_app_id: review.consumerGroup
{{- end -}}
