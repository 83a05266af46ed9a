# frozen_string_literal: true

module Divvy
  # The interface of a divvy task. Include it in a class and define
  # {#dispatch} and {#perform}; the hooks are optional.
  #
  # Four more methods are looked up on the task and called only when it
  # defines them, so this module does not:
  #
  # - `completed(result, *args)` runs in the master for each item performed,
  #   with what {#perform} returned (a Marshal round trip away) and the
  #   item's arguments. Defining it makes workers send their results back.
  # - `failed(error, *args)` runs in the master for each item that finally
  #   failed, after its retries, with a {Divvy::TaskError} and the item's
  #   arguments.
  # - `broke(value, *args)` runs in the master for each item whose
  #   {#perform} raised {Divvy::Break}, with the Break's value (a Marshal
  #   round trip away; nil when Marshal cannot dump it) and the item's
  #   arguments. Such an item counts as performed and is not retried; the
  #   master starts no new item, lets the items in flight finish (their
  #   results still reach `completed`) and {Divvy::Master#run} returns
  #   normally. Without the hook a Break stops the run all the same.
  # - `total` returns how many items {#dispatch} will yield (or nil), for
  #   the progress in the master's process title.
  module Parallelizable
    # The classes that included this module, oldest first. {Divvy.load}
    # picks its task class from them.
    #
    # @return [Array<Class>]
    def self.parallelizable
      @parallelizable ||= []
    end

    # Records each class that includes the module, so {Divvy.load} can find
    # it. Called by Ruby on `include`.
    #
    # @param klass [Module] the class including the module.
    # @return [void]
    def self.included(klass)
      super
      parallelizable << klass
    end

    # Yields each work item. Runs in the master. Every item is marshalled to
    # a free worker and handed to {#perform} with the yielded arguments.
    #
    # @yieldparam args [Array<Object>] one item: the arguments for {#perform}.
    # @return [void]
    # @raise [NotImplementedError] unless the task defines it.
    def dispatch
      raise NotImplementedError, "#{self.class} must define #dispatch"
    end

    # Performs one item. Runs in a worker.
    #
    # @param args [Array<Object>] exactly the arguments {#dispatch} yielded.
    # @return [Object] anything; it reaches the task's `completed` hook when
    #   the task defines one.
    # @raise [NotImplementedError] unless the task defines it (or `#process`,
    #   its name in divvy 1.1). Anything else it raises fails the item.
    def perform(*args)
      raise NotImplementedError, "#{self.class} must define #perform"
    end

    # Hook run in the master just before each worker is forked, replacements
    # included: for the first worker before {#dispatch} is called, for the
    # others while it runs. Does nothing unless the task overrides it.
    #
    # @param worker [Divvy::Worker] the worker about to start.
    # @return [void]
    # @raise [Exception] anything it raises stops the run, and {Divvy::Master#run}
    #   re-raises it.
    def before_fork(worker); end

    # Hook run in the worker right after it is forked, before it takes any
    # item: reopen connections and files here (see {file:docs/FORK_SAFETY.md}).
    # Does nothing unless the task overrides it.
    #
    # @param worker [Divvy::Worker] the worker that is now this process.
    # @return [void]
    # @raise [Exception] anything it raises (or an `exit`) fails the worker's
    #   boot; workers that keep failing to boot stop the run with
    #   {Divvy::Master::BootFailure}.
    def after_fork(worker); end

    # Hook run in the worker just before it leaves: after its last item,
    # when it is retired (`max_tasks:`, `max_memory:`, TTOU) and when a
    # drain (`INT`, `QUIT`) lets it go; close connections and flush files
    # here (see {file:docs/FORK_SAFETY.md}). It does not run in a worker
    # that is killed (`TERM`, `KILL`, a timeout) or dies. Does nothing
    # unless the task overrides it.
    #
    # @param worker [Divvy::Worker] the worker that is this process.
    # @return [void]
    def before_exit(worker); end
  end
end
